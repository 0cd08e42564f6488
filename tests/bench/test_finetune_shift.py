"""The shift-suite driver (steerlab.bench.finetune_shift) and the shared headline rows (steerlab.bench.suite):
tuning tasks and grid fixed in advance with an equal budget, the pick rule, the results schema."""

import json
from pathlib import Path

import pytest

from steerlab.bench import finetune_shift as fs
from steerlab.bench import suite
from steerlab.envs.metaworld_env import BENCHMARK_TASKS
from steerlab.rl.sac import SACConfig
from steerlab.rl.steering import method_class

SCHEMA = {"auc", "final_sampled", "final_eps0", "final_best", "final_best_ci95", "explore_jerk"}


def test_tuning_tasks_are_the_first_of_each_family():
    assert fs.tuning_tasks(BENCHMARK_TASKS) == ["assembly-v3", "box-close-v3"]
    assert fs.tuning_tasks(["hammer-v3", "push-wall-v3", "shelf-place-v3"]) == ["hammer-v3", "push-wall-v3"]


def test_sweep_grid_is_an_equal_budget_of_valid_settings(monkeypatch):
    monkeypatch.setattr(fs, "noise_dim", lambda base: 32)
    assert set(fs.SWEEP) == set(fs.METHODS)
    assert len({len(g) for g in fs.SWEEP.values()}) == 1  # the same number of runs per method
    for method, grid in fs.SWEEP.items():
        assert len({fs.label(method, s) for s in grid}) == len(grid)
        for setting in grid:
            steering, sac = fs.overrides(setting, "unused")
            method_class(method).Config.from_dict(steering)  # every knob is a real option of the method
            SACConfig(**sac)
    assert fs.overrides({"noise_magnitude": 1.5, "target_entropy_per_dim": -0.5}, "x") == (
        {"noise_magnitude": 1.5}, {"target_entropy": -16.0})


def _write(path: Path, data: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "result.json").write_text(json.dumps(data))


def test_pick_is_the_highest_mean_auc_ties_to_the_earlier_setting_and_waits_for_a_complete_sweep(tmp_path):
    plan = fs.Plan(quick=True)
    plan.sweep_root = tmp_path
    tasks = ["assembly-v3", "box-close-v3"]
    aucs = {"zprl": [(0.4, 0.6), (0.7, 0.3)],                 # tie at 0.5: the earlier setting
            "action-residual": [(0.1, 0.2), (0.3, 0.3)],       # the second
            "dsrl": [(0.9, 0.9), None]}                        # incomplete: no pick
    for method, rows in aucs.items():
        for setting, pair in zip(plan.sweep[method], rows):
            for task, auc in zip(tasks, pair or ()):
                _write(tmp_path / f"{task}__{fs.label(method, setting)}__seed0",
                       {"auc": auc, "env_steps": plan.env_steps, "final_eval_success": 0.5})
    rec = fs.sweep_record(plan, tasks)
    assert rec["picked"]["zprl"]["setting"] == plan.sweep["zprl"][0]
    assert rec["picked"]["action-residual"]["setting"] == plan.sweep["action-residual"][1]
    assert "dsrl" not in rec["picked"]
    assert rec["runs"]["zprl"][fs.label("zprl", plan.sweep["zprl"][0])]["mean_auc"] == pytest.approx(0.5)


def test_results_follow_the_issue_schema(tmp_path, monkeypatch):
    monkeypatch.setattr(fs, "TUNING", tmp_path / "tuning.json")
    plan = fs.Plan(quick=True)
    plan.base_root, plan.grid_root = tmp_path / "base", tmp_path / "grid"
    task, shift = "box-close-v3", "actuation:offset-x+0.10"
    _write(plan.base_root / f"{task}__base__seed0",
           {"final_sampled": 0.24, "final_eps0": 0.5, "final_episodes": 50, "final_sampled_jerk": 1e-3,
            "wall_seconds": 9.0, "shift": shift})
    for seed, (s, e) in enumerate([(0.6, 0.7), (0.5, 0.8)]):
        _write(plan.grid_root / f"{task}__zprl__seed{seed}",
               {"task": task, "method": "zprl", "seed": seed, "shift": shift, "env_steps": 600, "auc": 0.5,
                "dip": -0.1 * seed, "final_sampled": s, "final_eps0": e, "final_episodes": 50,
                "explore_jerk": 2e-3, "wall_seconds": 60.0, "curve_steps": [0, 600], "curve": [0.2, 0.6]})
    _write(plan.grid_root / f"{task}__dsrl__seed0",  # another shift: not this suite's run
           {"shift": "actuation:offset-x+0.50", "auc": 0.0, "env_steps": 600})
    res = fs.aggregate(plan, [task], {task: shift})
    assert res["shifts"] == {task: shift} and res["seeds"] == 2 and res["env_steps"] == 600
    base, zprl = res["tasks"][task]["base"], res["tasks"][task]["zprl"]
    assert SCHEMA <= set(base) and SCHEMA | {"dip", "wall_s"} <= set(zprl)
    assert "dsrl" not in res["tasks"][task]
    assert base["final_best"] == 0.5 and base["best_mode"] == "eps0"
    assert zprl["final_best"] == pytest.approx(0.75) and zprl["best_mode"] == "eps0"
    assert zprl["final_best_ci95"][0] < 0.75 < zprl["final_best_ci95"][1]
    assert zprl["best_vs_base"] == pytest.approx(0.25) and zprl["best_vs_base_ci95"][0] > 0
    assert zprl["dip"] == pytest.approx(-0.05) and zprl["wall_s"] == 60.0
    text = fs.table(res)
    assert "| box-close-v3 | actuation:offset-x+0.10 | zprl | 2/1 |" in text
    assert "+0.25 [" in text


def test_missing_calibration_stops_the_full_suite(tmp_path, monkeypatch):
    monkeypatch.setattr(fs, "TUNING", tmp_path / "tuning.json")
    with pytest.raises(SystemExit, match="no calibrated shift"):
        fs.shifts_for(["assembly-v3"], quick=False)
    assert fs.shifts_for(["assembly-v3", "box-close-v3"], quick=True) == {
        "assembly-v3": "coverage:low-0.50", "box-close-v3": "actuation:offset-x+0.05"}


def test_method_row_compares_modes_over_the_seeds_that_recorded_them():
    base = suite.base_row(0.4, 0.6, 50)
    outcomes = [{"seed": 0, "episodes": 50, "sampled": 0.5, "eps0": None, "auc": 0.4, "dip": 0.0},
                {"seed": 1, "episodes": 50, "sampled": 0.7, "eps0": 0.3, "auc": 0.6, "dip": -0.2}]
    row = suite.method_row(outcomes, base)
    assert row["best_mode"] == "sampled" and row["final_best"] == pytest.approx(0.6)
    assert row["eps0_seeds"] == 1 and row["final_eps0"] == pytest.approx(0.3)
    assert row["best_vs_base"] == pytest.approx(0.0)
    assert row["best_vs_base_ci95"][0] < 0 < row["best_vs_base_ci95"][1]


def test_a_run_recorded_with_other_settings_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(fs, "noise_dim", lambda base: 32)
    plan = fs.Plan(quick=True)
    cell = fs.make_cell(plan, "box-close-v3", "dsrl", "dsrl", 0, "actuation:offset-x+0.10", "b",
                        {"noise_magnitude": 1.5, "target_entropy_per_dim": 0.0}, tmp_path)
    out = Path(cell["out"])
    _write(out, {"env_steps": plan.env_steps, "final_eval_success": 0.5})
    cfg = {"finetune": {"shift": "actuation:offset-x+0.10", "steering": {"noise_magnitude": 1.5, "start": "base"},
                        "sac": {"target_entropy": 0.0, "hidden": 128}}}
    (out / "config.json").write_text(json.dumps(cfg))
    assert fs.recorded_as(cell)
    fs.refuse_stale([cell])  # same settings: fine
    cfg["finetune"]["steering"]["noise_magnitude"] = 2.5
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SystemExit, match="another shift or setting"):
        fs.refuse_stale([cell])


def test_intervals_contain_their_estimate_at_zero_and_one():
    base = suite.base_row(0.0, 1.0, 50)
    assert base["sampled_ci95"][0] == 0.0 and base["eps0_ci95"][1] == 1.0
    row = suite.method_row([{"seed": 0, "episodes": 4, "sampled": 0.0, "eps0": 0.0, "auc": 0.0}], base)
    assert row["final_best_ci95"][0] == 0.0 and row["final_best_ci95"][1] > 0.2
    assert row["best_vs_base_ci95"][1] == pytest.approx(-1.0 + row["final_best_ci95"][1], abs=0.1)


def _row(auc, start, best, ci, vs_base, vs_ci, jerk, seeds=3):
    return {"auc": auc, "start": start, "final_best": best, "final_best_ci95": ci, "best_vs_base": vs_base,
            "best_vs_base_ci95": vs_ci, "explore_jerk": jerk, "seeds": seeds}


def test_targets_count_each_comparison_and_wait_for_every_task():
    tasks = {}
    for i, task in enumerate(sorted(BENCHMARK_TASKS)):
        win = i < 6  # zprl wins the first six tasks on every count
        tasks[task] = {"base": {"final_best": 0.5},
                       "zprl": _row(0.6 if win else 0.2, 0.3, 0.8, [0.7, 0.9], 0.3 if win else -0.1,
                                    [0.1, 0.5] if i < 4 else [-0.1, 0.4], 1.0 if win else 9.0),
                       "action-residual": _row(0.4, 0.3, 0.5, [0.4, 0.6], 0.0, [-0.2, 0.2], 5.0),
                       # dsrl ends surely below where it started on the last task only
                       "dsrl": _row(0.5, 0.9 if i == 7 else 0.3, 0.4, [0.3, 0.5], -0.1, [-0.3, 0.1], 5.0)}
    t = fs.targets({"tasks": tasks, "planned_seeds": 3})
    assert t["tasks"] == 8 and t["best"] == {"above": 6, "interval_above_0": 4}
    assert t["auc"] == {"action-residual": 6, "dsrl": 6} and t["smooth"] == 6
    assert t["collapse"] == [sorted(BENCHMARK_TASKS)[7]]
    assert t["met"] == {"best": True, "auc": True, "smooth": True, "collapse": False}
    assert "**missed**" in fs.targets_text(t) and "6/8" in fs.targets_text(t)
    # one seed short anywhere: counted, not decided
    tasks[sorted(BENCHMARK_TASKS)[0]]["dsrl"]["seeds"] = 2
    assert fs.targets({"tasks": tasks, "planned_seeds": 3})["met"] is None
    # a task without every row is left out of the counts
    del tasks[sorted(BENCHMARK_TASKS)[1]]["dsrl"]
    assert fs.targets({"tasks": tasks, "planned_seeds": 3})["tasks"] == 7


def test_diagnosis_sets_the_eps0_sampler_run_beside_the_grid_runs(tmp_path, monkeypatch):
    plan = fs.Plan(quick=True)
    plan.grid_root, plan.diagnosis_root = tmp_path / "grid", tmp_path / "diag"
    task = "box-close-v3"
    row = {"start_success": 0.2, "final_sampled": 0.5, "final_eps0": 0.6, "dip": 0.0, "final_eval_success": 0.5}
    _write(plan.diagnosis_root / f"{task}__{fs.DIAGNOSIS['name']}__seed0", {**row, "auc": 0.52, "start_success": 0.55})
    _write(plan.grid_root / f"{task}__zprl__seed0", {**row, "auc": 0.34})
    _write(plan.grid_root / f"{task}__dsrl__seed1", {**row, "auc": 0.9})  # not seed 0: not this diagnosis
    diag = fs.diagnosis(plan, [task, "assembly-v3"])
    assert list(diag) == [task]  # a task without the diagnosis run is left out
    assert set(diag[task]) == {fs.DIAGNOSIS["name"], "zprl"} and diag[task]["zprl"]["auc"] == 0.34
    text = fs.diagnosis_text(diag)
    assert f"{fs.DIAGNOSIS['name']} 0.52 (from 0.55), zprl 0.34 (from 0.20)" in text
    # the diagnosis run goes through the benchmark's finetune with its sampler setting
    cell = fs.make_cell(plan, task, "zprl", fs.DIAGNOSIS["name"], 0, "actuation:offset-x+0.10", "b", {},
                        plan.diagnosis_root, sampler_noise_scale=0.0)
    assert cell["sampler_noise_scale"] == 0.0
    (Path(cell["out"])).mkdir(parents=True, exist_ok=True)
    (Path(cell["out"]) / "config.json").write_text(json.dumps(
        {"finetune": {"shift": cell["shift"], "steering": {}, "sac": {}, "sampler_noise_scale": 1.0}}))
    assert not fs.recorded_as(cell)  # a run recorded with the base sampler is not the diagnosis


def test_family_summary_says_who_leads_each_family_with_ties_counted_for_each():
    def rows(z, a, d):
        return {"base": {"final_best": 0.5},
                **{m: {"final_best": v, "auc": v, "best_vs_base": v - 0.5, "best_vs_base_ci95": [v - 0.6, v - 0.4]}
                   for m, v in (("zprl", z), ("action-residual", a), ("dsrl", d))}}
    results = {"families": {"a": "coverage", "b": "coverage", "c": "actuation"},
               "tasks": {"a": rows(0.8, 0.6, 0.7), "b": rows(0.7, 0.6, 0.701), "c": rows(0.5, 0.9, 0.6)}}
    summary = fs.family_summary(results).splitlines()
    # b's 0.70 and 0.701 are one value in the table: a tie, counted for both
    assert "highest final best mode: zprl 2, action-residual 0, dsrl 1" in summary[0]
    assert "highest AUC: zprl 0, action-residual 1, dsrl 0" in summary[1]
    del results["tasks"]["c"]["dsrl"]  # a task without every row is not counted
    assert "highest AUC: zprl 0, action-residual 0, dsrl 0" in fs.family_summary(results).splitlines()[1]


def test_sampler_mode_rule_is_fixed_from_the_calibration_for_the_methods_keeping_the_sampler():
    from steerlab.bench import sampler_rule
    from steerlab.rl.steering import REGISTRY

    assert set(sampler_rule.KEEPS_SAMPLER) == {n for n, c in REGISTRY.items() if c.keeps_sampler}
    calib = {"episodes": 50, "chosen": {"a-v3": {"eps0": 0.4, "sampled": 0.4, "shift": "s1"},
                                        "b-v3": {"eps0": 0.46, "sampled": 0.48, "shift": "s2"}}}
    rec = sampler_rule.rule_record(calib)
    assert {t: r["chosen"] for t, r in rec["tasks"].items()} == {"a-v3": 0.0, "b-v3": 1.0}
    assert rec["episodes"] == 50 and rec["tasks"]["b-v3"]["sampled"] == 0.48
    # the committed decision is the rule applied to the committed calibration
    tuning = json.loads((Path(fs.TUNING)).read_text())
    assert tuning["sampler_mode_rule"] == sampler_rule.rule_record(tuning["shift_calibration"])
    quick = sampler_rule.grid_modes(["a-v3"], True, {"a-v3": {"final_eps0": 0.1, "final_sampled": 0.2}})
    assert quick == {"a-v3": 1.0}
