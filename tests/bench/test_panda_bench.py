"""steerlab.bench.panda: the calibration rule, its resumption, the README table from recorded cells."""

from pathlib import Path

from steerlab.bench import panda


def _fake_base(best_by_scale, calls):
    def base_checkpoint(task, quality, scale, seed=0, progress=True):
        calls.append(scale)
        return Path(f"/nonexistent/{task}__x{scale:g}")

    def evaluate_both(ckpt, task, episodes, seed):
        scale = float(str(ckpt).rpartition("__x")[2])
        sampled, eps0 = best_by_scale[scale]
        assert seed == panda.CALIBRATION_SEED  # calibration never looks at the reported seeds' episodes
        return {"sampled": {"success": sampled}, "eps0": {"success": eps0}, "best": max(sampled, eps0)}

    return base_checkpoint, evaluate_both


def test_calibration_takes_the_first_grid_scale_at_or_below_the_ceiling_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(panda, "CELLS", tmp_path)
    # best mode: 0.9 at 0.5, 0.72 at 1.0 (above the ceiling through ε = 0), 0.7 at 1.5 -> 1.5; 2.0 never evaluated
    table = {0.5: (0.9, 0.6), 1.0: (0.4, 0.72), 1.5: (0.7, 0.5), 2.0: (0.1, 0.1), 3.0: (0.0, 0.0)}
    calls = []
    base_checkpoint, evaluate_both = _fake_base(table, calls)
    monkeypatch.setattr(panda, "base_checkpoint", base_checkpoint)
    monkeypatch.setattr(panda, "evaluate_both", evaluate_both)
    rec = panda.calibrate("PandaPush-v3")
    assert rec["chosen"] == 1.5 and calls == [0.5, 1.0, 1.5] and sorted(rec["points"]) == ["0.5", "1", "1.5"]
    calls.clear()
    assert panda.calibrate("PandaPush-v3")["chosen"] == 1.5 and calls == []   # recorded points are not recomputed


def test_calibration_falls_back_to_the_largest_scale_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(panda, "CELLS", tmp_path)
    base_checkpoint, evaluate_both = _fake_base({s: (0.95, 0.9) for s in panda.NOISE_GRID}, [])
    monkeypatch.setattr(panda, "base_checkpoint", base_checkpoint)
    monkeypatch.setattr(panda, "evaluate_both", evaluate_both)
    rec = panda.calibrate("PandaPickAndPlace-v3")
    assert rec["chosen"] == panda.NOISE_GRID[-1] and "no grid scale" in rec["note"]


def test_pretrain_table_shows_recorded_rows_and_dashes_for_missing_ones():
    mode = {"success": 0.42, "ci95": [0.29, 0.56], "length_mean": 40.0, "jerk": 1e-3}
    results = {"kind": "pretrain", "max_steps": 50, "demos": 50, "pretrain_steps": 2000,
               "experts": {"PandaPush-v3": {"success": 0.93, "ci95": [0.86, 0.97]}},
               "bases": {"PandaPush-v3__mixed": {"noise_scale": 0.5, "sampled": mode, "eps0": {**mode, "success": 0.24}}},
               "noise_scales": {"PandaPush-v3": 0.5}}
    text = panda.table(results)
    push = next(line for line in text.splitlines() if line.startswith("| PandaPush-v3"))
    assert "0.93 [0.86, 0.97]" in push and "0.42 [0.29, 0.56]" in push and "0.24 [0.29, 0.56]" in push
    pnp = next(line for line in text.splitlines() if line.startswith("| PandaPickAndPlace-v3"))
    assert pnp.count("—") == 5
