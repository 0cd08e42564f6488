"""The numbers the README tables are built from: AUC, steps-to-threshold, sweep skipping."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import finetune  # noqa: E402

from steerlab.sweep import run_grid  # noqa: E402


def test_auc_and_steps_to_base_plus_20():
    rows = [{"step": 0, "eval_success": 0.4, "explore_jerk": float("nan")},
            {"step": 5000, "eval_success": 0.5, "explore_jerk": 1.0},
            {"step": 10000, "eval_success": 0.7, "explore_jerk": 3.0}]
    s = finetune.summarize_run(rows, 10000, base_success=0.4)
    assert s["auc"] == pytest.approx((0.5 * (0.4 + 0.5) * 5000 + 0.5 * (0.5 + 0.7) * 5000) / 10000)
    assert s["final_success"] == 0.7 and s["steps_to_base_plus_20"] == 10000
    assert s["explore_jerk"] == 2.0  # NaN rows (the step-0 base evaluation) are not exploration
    assert finetune.summarize_run(rows[:2], 5000, base_success=0.4)["steps_to_base_plus_20"] is None


def test_run_grid_skips_recorded_cells():
    done = {1}
    ran = []
    run_grid([{"i": 0}, {"i": 1}, {"i": 2}], lambda c: ran.append(c["i"]) or c, lambda c: c["i"] in done,
             use_ray=False, desc="test")
    assert ran == [0, 2]


def _run(task, method, seed, auc, final, zero=None):
    r = {"task": task, "method": method, "name": method, "seed": seed, "env_steps": 10000, "wall_seconds": 600.0,
         "train_env_steps_per_s": 50.0, "auc": auc, "final_eval_success": final, "explore_jerk": 1e-3,
         "eval_jerk": 2e-3, "steps_to_base_plus_20": None, "curve_steps": [0, 10000], "curve": [0.4, final],
         "base_success_step0": 0.4}
    if zero is not None:
        r["final_zero_noise_success"] = zero
    return r


def test_aggregate_means_over_seeds_and_table_marks_missing_zero_noise(tmp_path):
    from steerlab.core.checkpoint import atomic_write_json

    runs = [_run("push-wall-v3", "zprl", 0, 0.5, 0.6, zero=0.9), _run("push-wall-v3", "zprl", 1, 0.7, 0.8, zero=0.7),
            _run("push-wall-v3", "dsrl", 0, 0.2, 0.1), _run("box-close-v3", "zprl", 0, 0.5, 0.5),
            _run("box-close-v3", "zprl", 1, 0.5, 0.5, zero=0.6)]
    for r in runs:
        atomic_write_json(tmp_path / f"{r['task']}__{r['method']}__seed{r['seed']}" / "result.json", r)
    res = finetune.aggregate(tmp_path)
    z = res["tasks"]["push-wall-v3"]["zprl"]
    assert z["seeds"] == 2 and z["auc"] == pytest.approx(0.6) and z["final_success"] == pytest.approx(0.7)
    assert z["final_zero_noise_success"] == pytest.approx(0.8)
    assert "final_zero_noise_success" not in res["tasks"]["push-wall-v3"]["dsrl"]
    partial = res["tasks"]["box-close-v3"]["zprl"]  # one seed predates the ε = 0 column: mean of the other
    assert partial["final_zero_noise_success"] == pytest.approx(0.6) and partial["zero_noise_seeds"] == 1
    assert res["runs"] == 5 and res["run_wall_seconds"]["total"] == pytest.approx(3000.0)
    table = finetune.table(res)
    assert "| push-wall-v3 | zprl | 2 | 0.60 ± 0.10 | 0.70 ± 0.10 | 0.80 |" in table
    assert "| push-wall-v3 | dsrl | 1 | 0.20 | 0.10 | — |" in table
    assert "| box-close-v3 | zprl | 2 | 0.50 ± 0.00 | 0.50 ± 0.00 | 0.60 (1 of 2 seeds) |" in table
