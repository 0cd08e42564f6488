"""The shift-calibration rule (steerlab.bench.shift_calibrate): families fixed in advance, first grid value
whose base best mode is <= 0.60, everything recorded, recorded cells never recomputed."""

import json

from steerlab.bench import shift_calibrate as sc
from steerlab.envs.metaworld_env import BENCHMARK_TASKS
from steerlab.envs.shifts import parse_shift


def test_families_alternate_over_sorted_tasks_and_grids_parse():
    fam = sc.assign_families(BENCHMARK_TASKS)
    assert [fam[t] for t in sorted(BENCHMARK_TASKS)] == ["coverage", "actuation"] * 4
    for family, grid in sc.GRIDS.items():
        shifts = [parse_shift(g) for g in grid]
        assert all(s.family == family for s in shifts)
        assert [s.magnitude for s in shifts] == sorted(s.magnitude for s in shifts)  # mildest first
        assert [s.name for s in shifts] == grid  # canonical names


def test_rule_picks_first_value_at_or_below_threshold_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(sc, "TUNING", tmp_path / "tuning.json")
    tmp_path.joinpath("tuning.json").write_text(json.dumps({"other_sweep": {"kept": True}}))
    best = {"actuation:offset-x+0.05": 0.9, "actuation:offset-x+0.10": 0.6, "coverage:low-0.50": 0.7,
            "coverage:low-0.70": 0.65, "coverage:low-0.80": 0.61, "coverage:low-0.90": 0.62}
    calls = []

    def fake_cell(task, family, shift, episodes, quick):
        calls.append((task, shift))
        return {"task": task, "family": family, "shift": shift, "episodes": episodes, "sampled": best[shift] - 0.3,
                "eps0": best[shift], "best": best[shift], "seconds": 0.0}

    monkeypatch.setattr(sc, "evaluate_cell", fake_cell)
    rec = sc.calibrate(["assembly-v3", "box-close-v3"], quick=False)
    assert rec["chosen"]["box-close-v3"] == {"shift": "actuation:offset-x+0.10", "reached": True,
                                             "sampled": best["actuation:offset-x+0.10"] - 0.3, "eps0": 0.6}
    assert rec["chosen"]["assembly-v3"]["shift"] == "coverage:low-0.90"  # none reached: the strongest, said so
    assert rec["chosen"]["assembly-v3"]["reached"] is False
    assert len(calls) == 2 + 4 and len(rec["cells"]) == 6
    saved = json.loads((tmp_path / "tuning.json").read_text())
    assert saved["other_sweep"] == {"kept": True} and saved["shift_calibration"]["grid"] == sc.GRIDS
    calls.clear()
    sc.calibrate(["assembly-v3", "box-close-v3"], quick=False)  # everything recorded: nothing recomputed
    assert calls == []
