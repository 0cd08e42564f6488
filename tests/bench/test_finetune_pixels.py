"""The pixel suite's plan: its cells, where they live, and a strict-JSON results file (no runs here)."""

import json
from pathlib import Path

from steerlab.bench.finetune_pixels import METHODS, STATE_ROW, Plan, cells, strict


def test_cells_cover_every_method_and_the_state_row_per_seed():
    plan = Plan(quick=True, seeds=2)
    got = cells(plan, "reach-v3", "actuation:offset-x+0.05",
                {"pixels": Path("/p"), "state": Path("/s"), "modes": {"pixels": 0.0, "state": 1.0}})
    assert sorted((c["name"], c["seed"]) for c in got) == sorted(
        [(m, s) for m in METHODS for s in (0, 1)] + [(STATE_ROW, s) for s in (0, 1)])
    assert {c["base"] for c in got if c["name"] == STATE_ROW} == {"/s"}
    assert {c["base"] for c in got if c["name"] != STATE_ROW} == {"/p"}
    # the sampler-mode rule: each base's chosen mode for the methods that keep the sampler; dsrl picks its own
    scales = {(c["name"], c["sampler_noise_scale"]) for c in got}
    assert scales == {("zprl", 0.0), ("action-residual", 0.0), ("dsrl", 1.0), (STATE_ROW, 1.0)}
    outs = [c["out"] for c in got]
    assert len(set(outs)) == len(outs) and all(Path(o).parent == plan.root for o in outs)
    assert plan.root.name == "finetune_pixels_quick" and Plan(quick=False).root.name == "finetune_pixels"


def test_results_are_strict_json():
    out = strict({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 0.5}})
    assert out == {"a": None, "b": [1.0, None], "c": {"d": 0.5}}
    json.dumps(out, allow_nan=False)
