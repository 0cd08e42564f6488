"""`steerlab bench panda_rule`: panda-gym at the shift grid's budget under the sampler-mode rule (issue 26, item 5):
the rule read from the panda calibration, the cells it plans, the target counted from recorded runs."""

import json
from pathlib import Path

import pytest

from steerlab.bench import finetune_shift as fs
from steerlab.bench import panda
from steerlab.bench import panda_rule as pr

TASKS = ("PandaPush-v3", "PandaPickAndPlace-v3")


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """A calibration (push: sampled better; pick-and-place: a tie, so ε = 0), base rows and tuning picks."""
    cal = tmp_path / "panda_calibration.json"
    points = {"PandaPush-v3": (0.42, 0.24), "PandaPickAndPlace-v3": (0.26, 0.26)}
    cal.write_text(json.dumps({"tasks": {t: {"chosen": 0.5, "eval_episodes": 50, "eval_seed": 100, "points": {
        "0.5": {"sampled": {"success": s}, "eps0": {"success": e}}}} for t, (s, e) in points.items()}}))
    for mod in (panda, pr):
        monkeypatch.setattr(mod, "CALIBRATION_FILE", cal)
    cells = tmp_path / "cells"
    cells.mkdir()
    for t, (s, e) in points.items():
        (cells / f"base__{t}__mixed.json").write_text(json.dumps(
            {"episodes": 50, "sampled": {"success": s, "jerk": 1e-3}, "eps0": {"success": e, "jerk": 1e-3}}))
    for mod in (panda, pr):
        monkeypatch.setattr(mod, "CELLS", cells)
    tuning = tmp_path / "tuning.json"
    tuning.write_text(json.dumps({"sweep": {"picked": {
        "zprl": {"setting": {"latent_rms_ratio": 0.3}},
        "action-residual": {"setting": {"residual_scale": 0.05, "progressive_steps": 20000}},
        "dsrl": {"setting": {"noise_magnitude": 1.5, "target_entropy_per_dim": -0.5}}}}}))
    monkeypatch.setattr(fs, "TUNING", tuning)
    monkeypatch.setattr(fs, "noise_dim", lambda base: 16)  # DSRL's entropy target scales with the noise size
    monkeypatch.setattr(pr, "ROOT", tmp_path / "runs")
    monkeypatch.setattr(pr, "SHORT_FILE", tmp_path / "panda_finetune.json")
    return tmp_path


def test_the_rule_reads_the_calibration_episodes_and_prefers_eps0_on_a_tie(recorded):
    modes = pr.rule_modes(list(TASKS))
    assert modes["PandaPush-v3"]["chosen"] == 1.0 and modes["PandaPickAndPlace-v3"]["chosen"] == 0.0
    assert modes["PandaPush-v3"]["seed"] == 100  # never the reported seeds' episodes


def test_cells_are_seed_major_with_the_grid_recipe_and_the_rule_only_for_samplers_keepers(recorded):
    modes = pr.rule_modes(list(TASKS))
    bases = {t: f"/bases/{t}" for t in TASKS}
    cells = pr.cells(pr.plan(), list(TASKS), 2, list(pr.METHODS), bases, modes)
    assert len(cells) == 12 and [c["seed"] for c in cells] == [0] * 6 + [1] * 6
    by = {(c["task"], c["method"], c["seed"]): c for c in cells}
    pnp = "PandaPickAndPlace-v3"
    assert by[(pnp, "zprl", 0)]["sampler_noise_scale"] == 0.0 == by[(pnp, "action-residual", 1)]["sampler_noise_scale"]
    assert by[(pnp, "dsrl", 0)]["sampler_noise_scale"] == 1.0  # DSRL picks its own noise
    assert by[("PandaPush-v3", "zprl", 0)]["sampler_noise_scale"] == 1.0
    c = by[("PandaPush-v3", "dsrl", 1)]
    assert (c["env_steps"], c["n_envs"], c["eval_every"], c["max_steps"]) == (50_000, fs.N_ENVS, 5_000, panda.MAX_STEPS)
    assert c["sac"]["target_entropy"] == pytest.approx(-0.5 * 16) and c["steering"]["noise_magnitude"] == 1.5
    assert Path(c["out"]).parent == pr.ROOT


def test_cells_refuse_a_method_without_a_tuned_pick(recorded):
    (recorded / "tuning.json").write_text(json.dumps({"sweep": {"picked": {}}}))
    with pytest.raises(SystemExit, match="no picked setting for zprl"):
        pr.cells(pr.plan(), list(TASKS), 1, ["zprl"], {t: "b" for t in TASKS}, pr.rule_modes(list(TASKS)))


def _run(root: Path, task: str, method: str, seed: int, sampled: float, auc: float) -> None:
    d = root / f"{task}__{method}__seed{seed}"
    d.mkdir(parents=True)
    (d / "result.json").write_text(json.dumps({
        "task": task, "method": method, "seed": seed, "env_steps": 50_000, "final_episodes": 50,
        "final_sampled": sampled, "final_eps0": sampled - 0.1, "final_eval_success": sampled,
        "final_zero_noise_success": sampled - 0.1, "auc": auc, "dip": -0.05, "curve_steps": [0, 50_000],
        "curve": [0.3, sampled], "steps_to_base_plus_20": None, "explore_jerk": 1e-3, "eval_jerk": 1e-3,
        "train_env_steps_per_s": 100.0, "wall_seconds": 500.0, "base_success_step0": 0.3}))


def test_the_target_waits_for_every_seed_then_needs_one_task_clear_of_the_base(recorded):
    modes = pr.rule_modes(list(TASKS))
    for s in range(2):  # push: ZPRL far above the base's best (0.42); pick-and-place: at it
        _run(pr.ROOT, "PandaPush-v3", "zprl", s, 0.9, 0.7)
        _run(pr.ROOT, "PandaPickAndPlace-v3", "zprl", s, 0.26, 0.25)
        _run(pr.ROOT, "PandaPush-v3", "dsrl", s, 0.5, 0.4)
    partial = pr.collect(list(TASKS), 3, modes)
    assert partial["targets"]["met"] is None and "not decided yet" in pr.table(partial)
    for t, v in (("PandaPush-v3", 0.9), ("PandaPickAndPlace-v3", 0.26)):
        _run(pr.ROOT, t, "zprl", 2, v, 0.5)
    out = pr.collect(list(TASKS), 3, modes)
    t = out["targets"]
    assert t["zprl_above_base_interval_clear"] == ["PandaPush-v3"] and t["met"] == {"best": True}
    assert t["zprl_auc_ge_dsrl"] == ["PandaPush-v3"]
    assert out["tasks"]["PandaPush-v3"]["rule"]["chosen"] == 1.0
    (recorded / "panda_finetune.json").write_text(json.dumps({"env_steps": 10_000, "tasks": {"PandaPush-v3": {
        "zprl": {"auc": 0.3, "best_vs_base": 0.02, "best_vs_base_ci95": [-0.1, 0.15], "seeds": 2}}}}))
    out = pr.collect(list(TASKS), 3, modes)
    text = pr.table(out)
    assert "PandaPush-v3 zprl +0.02 [-0.10, +0.15] →" in text and "at 10k steps" in text
    assert out["tasks"]["PandaPush-v3"]["paired"]["zprl"] == {"start": 0.3, "last": 0.9, "seeds": 3}
    assert "PandaPush-v3 zprl 0.30 → 0.90" in text
    assert "panda target" in text and ": met;" in text and "PandaPush-v3 (seed 100, 50 episodes) ε = 0 0.24 vs sampled 0.42 → sampled" in text


def test_base_check_compares_this_machines_evaluation_with_the_recorded_row(recorded, monkeypatch):
    monkeypatch.setattr(pr, "evaluate_both", lambda ckpt, task, episodes, seed: {
        "sampled": {"success": 0.42}, "eps0": {"success": 0.26 if seed == 0 else 0.0}})
    pr.base_check("PandaPush-v3")
    c = pr.compare_base("PandaPush-v3")
    assert c["success_equal"] is False and c["here"] == {"sampled": 0.42, "eps0": 0.26}
    assert pr.compare_base("PandaPickAndPlace-v3") is None  # not evaluated here yet
