"""The README's N = 1 vs N = 8 rows come from the recorded runs' result.json files, never typed."""

import json
from pathlib import Path

import pytest

from steerlab.bench import vector_efficiency as ve


def _write(root: Path, task: str, n: int, seed: int, auc: float, final: float, rate: float, resumed: bool = False):
    out = root / f"{task}__n{n}__seed{seed}"
    out.mkdir(parents=True)
    res = {"task": task, "method": "zprl", "seed": seed, "n_envs": n, "utd": 1.0, "env_steps": 10000,
           "wall_seconds": 600.0, "train_wall_seconds": (10000 + 100 * (n == 1)) / rate, "train_env_steps_per_s": rate,
           "load_average": 4.0, "resumed": resumed, "auc": auc, "final_success": final,
           "curve_steps": [0, 5000, 10000 + 100 * (n == 1)], "curve": [0.4, 0.5, final], "base_success_step0": 0.4}
    (out / "result.json").write_text(json.dumps(res))


def test_aggregate_and_table(tmp_path):
    budget = {"env_steps": 10000, "eval_every": 2500, "eval_episodes": 20, "warmup": 1000, "utd": 1.0,
              "tasks": ["push-wall-v3", "box-close-v3"], "n_envs": [1, 8], "seeds": [0, 1]}
    _write(tmp_path, "push-wall-v3", 1, 0, 0.40, 0.50, 20.0)
    _write(tmp_path, "push-wall-v3", 1, 1, 0.50, 0.70, 30.0)
    _write(tmp_path, "push-wall-v3", 8, 0, 0.45, 0.60, 40.0)
    _write(tmp_path, "push-wall-v3", 8, 1, 0.45, 0.60, 99.0, resumed=True)  # its times cover only a part
    res = ve.aggregate(tmp_path, budget)
    one, eight = res["tasks"]["push-wall-v3"]["1"], res["tasks"]["push-wall-v3"]["8"]
    assert one["auc"] == pytest.approx(0.45) and one["final_success"] == pytest.approx(0.60)
    assert one["train_env_steps_per_s"] == pytest.approx(25.0) and one["seeds"] == [0, 1]
    assert eight["train_env_steps_per_s"] == pytest.approx(40.0)  # the resumed run's rate is left out
    table = ve.table(res)
    assert "| push-wall-v3 | 1 | 0,1 | 0.45 ± 0.05 | 0.60 ± 0.10 | 0.40 | 25.0 | 10.0 |" in table
    assert "Not yet run (rerun the script to add them): box-close-v3 N=1, box-close-v3 N=8." in table


def test_run_folders_are_per_task_envs_and_seed(tmp_path):
    cell = {"root": str(tmp_path), "task": "push-wall-v3", "n_envs": 8, "seed": 2, "env_steps": 100}
    assert ve.run_dir(cell).name == "push-wall-v3__n8__seed2"
    assert not ve.is_done(cell)
