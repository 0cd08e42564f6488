"""The numbers the README tables are built from: AUC, steps-to-threshold, sweep skipping."""


import pytest

from steerlab.bench import finetune
from steerlab.bench.sweep import run_grid


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
    # headline: final sampled | ε = 0 | best mode [95%] | best − base best [95%] | dip | AUC
    assert "| push-wall-v3 | zprl | 2 | 0.70 | 0.80 | 0.80 [" in table and "(ε = 0) | -0.08 [" in table
    assert "| push-wall-v3 | dsrl | 1 | 0.10 | — | 0.10 [" in table
    assert "| box-close-v3 | zprl | 2 | 0.50 | 0.60 (1 of 2 seeds) | 0.60 [" in table
    assert "(ε = 0, 1 seed) | -0.10 [" in table  # the best mode rests on one seed: said so
    assert z["best_vs_base"] == pytest.approx(0.80 - res["tasks"]["push-wall-v3"]["base"]["final_best"])
    assert z["dip"] is None  # no metrics recorded for these runs: no dip, shown as —


def test_dip_of_runs_recorded_before_finetune_wrote_it_comes_from_their_metrics(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps({"finetune": {"warmup_decisions": 100},
                                                      "base_config": {"n_action_steps": 2}}))
    rows = [{"step": 0, "eval_success": 0.6}, {"step": 150, "eval_success": 0.1},  # inside the warm-up (200 env steps)
            {"step": 400, "eval_success": 0.3}, {"step": 800, "eval_success": 0.9}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert finetune.run_dip(tmp_path, {}) == pytest.approx(0.3 - 0.6)
    assert finetune.run_dip(tmp_path, {"dip": -0.05}) == -0.05  # recorded: used as is
    assert finetune.run_dip(tmp_path / "missing", {}) is None
