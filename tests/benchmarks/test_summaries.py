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
