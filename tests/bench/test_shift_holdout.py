"""`steerlab bench shift_holdout`: held-out tasks drawn and calibrated by a rule fixed in advance, kept only when
the calibrated base leaves room to steer, and issue 26's counts made from their runs."""

import json

import pytest

from steerlab.bench import finetune_shift as fs
from steerlab.bench import shift_calibrate as sc
from steerlab.bench import shift_holdout as sh
from steerlab.core.io import atomic_write_json
from steerlab.envs.metaworld_env import BENCHMARK_TASKS, SANITY_TASKS

TASKS = sorted([*BENCHMARK_TASKS, *SANITY_TASKS, *(f"t{i}-v3" for i in range(10))])


def test_candidates_are_the_tasks_outside_the_suite_in_one_fixed_draw():
    pool = sh.candidates(TASKS)
    assert sorted(t for t, _ in pool) == [f"t{i}-v3" for i in range(10)]
    assert pool == sh.candidates(list(reversed(TASKS)))  # the draw does not depend on the listing's order
    assert [f for _, f in pool] == ["coverage", "actuation"] * 5


@pytest.fixture
def tuning(tmp_path, monkeypatch):
    monkeypatch.setattr(sh, "TUNING", tmp_path / "tuning.json")
    monkeypatch.setattr(sh, "RUNS", tmp_path / "runs")
    (tmp_path / "tuning.json").write_text(json.dumps({"shift_calibration": {"kept": True}}))
    return tmp_path / "tuning.json"


def test_the_first_two_kept_per_family_are_the_check_and_nothing_later_is_evaluated(tuning, monkeypatch):
    pool = sh.candidates(TASKS)
    cov = [t for t, f in pool if f == "coverage"]
    act = [t for t, f in pool if f == "actuation"]
    # coverage: the 1st never gets to <= 0.60 (not kept), the 2nd leaves the base at 0.05 (below the floor: not
    # kept), the 3rd and 4th are kept; actuation: the first two are kept
    best = {cov[0]: 0.9, cov[1]: 0.05, cov[2]: 0.5, cov[3]: 0.3, act[0]: 0.4, act[1]: 0.6}
    calls = []

    def fake_cell(task, family, shift, episodes, quick):
        calls.append(task)
        b = best[task]
        return {"task": task, "family": family, "shift": shift, "episodes": episodes, "sampled": b - 0.05,
                "eps0": b, "best": b, "seconds": 0.0}

    monkeypatch.setattr(sc, "evaluate_cell", fake_cell)
    assert sh.selected(pool, sh.load_record()) == ([], False)  # nothing decided yet
    sh.calibrate(pool, ["coverage"])
    assert sh.selected(pool, sh.load_record()) == ([cov[2], cov[3]], False)  # the actuation walk has not run
    sh.calibrate(pool, ["actuation"])
    rec = sh.load_record()
    assert sh.selected(pool, rec) == ([cov[2], cov[3], act[0], act[1]], True)
    assert not rec["chosen"][cov[0]]["kept"] and rec["chosen"][cov[0]]["reached"] is False
    assert not rec["chosen"][cov[1]]["kept"] and rec["chosen"][cov[1]]["reached"] is True
    assert set(calls) == set(best) and calls.count(cov[0]) == len(sc.GRIDS["coverage"])  # no later candidate
    assert calls.count(act[0]) == 1 and calls.count(cov[2]) == 1  # mildest value already <= 0.60
    saved = json.loads(tuning.read_text())
    assert saved["shift_calibration"] == {"kept": True}  # other keys of tuning.json survive
    n = len(calls)
    sh.calibrate(pool, ["coverage", "actuation"])
    assert len(calls) == n  # recorded cells and choices are reused


def test_saves_from_two_processes_merge_their_cells(tuning):
    a, b = sh.load_record(), sh.load_record()
    a["cells"]["x|s"], a["chosen"]["x"] = {"best": 0.1}, {"kept": True}
    b["cells"]["y|s"], b["chosen"]["y"] = {"best": 0.2}, {"kept": False}
    sh.save_record(a)
    sh.save_record(b)  # b never saw a's cell: it must not drop it
    rec = sh.load_record()
    assert set(rec["cells"]) == {"x|s", "y|s"} and set(rec["chosen"]) == {"x", "y"}


def _run(root, task, method, seed, auc, sampled, eps0, dip, start=0.4):
    d = root / f"{task}__{method}__seed{seed}"
    d.mkdir(parents=True)
    (d / "result.json").write_text(json.dumps({"seed": seed, "final_episodes": 50, "final_sampled": sampled,
                                               "final_eps0": eps0, "auc": auc, "dip": dip}))
    (d / "metrics.jsonl").write_text(json.dumps({"step": 0, "eval_success": start, "eval_length": 150.0}) + "\n")


def test_counts_compare_zprl_in_the_rules_mode_with_dsrl_and_the_base(tmp_path, monkeypatch):
    monkeypatch.setattr(sh, "ROOT", tmp_path / "holdout")
    monkeypatch.setattr(sh, "picked_settings", lambda key, methods: {m: {} for m in methods})
    tasks = ["a-v3", "b-v3", "c-v3", "d-v3"]
    rec = {"chosen": {t: {"family": "coverage" if i % 2 == 0 else "actuation", "shift": "s", "reached": True,
                          "kept": True, "sampled": 0.3, "eps0": 0.4 if i < 3 else 0.2} for i, t in enumerate(tasks)}}
    for i, t in enumerate(tasks):
        d = sh.ROOT / "base" / f"{t}__base__seed0"
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"final_sampled": 0.3, "final_eps0": 0.4, "final_episodes": 50,
                                                   "final_sampled_jerk": 1e-3, "wall_seconds": 1.0}))
        for s in range(2 if i == 3 else 3):
            # c's seed 1 starts elsewhere than DSRL's although both run from ε = 0: a broken like-for-like start
            _run(sh.ROOT, t, "zprl", s, auc=0.7 if i < 2 else 0.4, sampled=0.5, eps0=0.9, dip=-0.3 if i == 1 else 0.0,
                 start=0.3 if (i, s) == (2, 1) else 0.4)
            _run(sh.ROOT, t, "dsrl", s, auc=0.5, sampled=0.6, eps0=0.6, dip=-0.1)
    res = sh.collect(fs.Plan(False), tasks, rec, seeds=3, pool=[(t, rec["chosen"][t]["family"]) for t in reversed(tasks)])
    assert [c["task"] for c in res["candidates_walked"]] == list(reversed(tasks))  # in the draw's order
    saved = tmp_path / "res.json"
    atomic_write_json(saved, res)  # and so they stay once written and read back
    assert [c["task"] for c in json.loads(saved.read_text())["candidates_walked"]] == list(reversed(tasks))
    c = res["counts"]
    assert (c["tasks"], c["auc_ge_dsrl"], c["final_best_ge_dsrl"], c["above_base"]) == (4, 2, 4, 4)
    assert c["dip_ge_dsrl"] == 3 and c["dip_below_-0.10"] == ["b-v3"]
    # the rule's mode: ε = 0 where the base's ε = 0 was at least as good (a, b, c), sampled on d; ZPRL ended best
    # at ε = 0 everywhere, so it was deployed in its best mode on three tasks
    assert [r["rule_mode"] for r in res["tasks"].values()] == ["eps0", "eps0", "eps0", "sampled"]
    assert c["best_is_deployed"] == 3
    assert c["start_mismatch"] == ["c-v3"]  # d runs sampled: its start is not DSRL's and is not compared
    assert res["tasks"]["a-v3"]["start_check"] == {"seeds_compared": 3, "success_equal": True}
    assert res["tasks"]["d-v3"]["start_check"]["success_equal"] is None
    assert res["complete"] is False  # d has two of three seeds
    text = sh.table(res)
    assert "partial" in text and "b-v3" in text and "2/4" in text


def test_the_tethered_variant_runs_after_the_check_as_zprl_in_the_rules_mode_plus_the_tether(tmp_path, monkeypatch):
    monkeypatch.setattr(sh, "base_for", lambda task, family, shift, quick: tmp_path / task)
    monkeypatch.setattr(sh, "picked_settings", lambda key, methods: {m: {"latent_rms_ratio": 0.3} if m == "zprl" else {}
                                                                      for m in methods})
    monkeypatch.setattr(fs, "noise_dim", lambda base: 4)
    rec = {"chosen": {"a-v3": {"family": "coverage", "shift": "s", "sampled": 0.3, "eps0": 0.4},
                      "b-v3": {"family": "actuation", "shift": "t", "sampled": 0.4, "eps0": 0.1}}}
    cells = sh.run_cells(fs.Plan(False), ["a-v3", "b-v3"], rec, seeds=2)
    names = [c["name"] for c in cells]
    assert names == ["zprl", "dsrl"] * 4 + [sh.TETHERED] * 4  # the check's own runs first, every seed
    by = {(c["task"], c["name"], c["seed"]): c for c in cells}
    for t in ("a-v3", "b-v3"):
        for s in range(2):
            plain, tied = by[(t, "zprl", s)], by[(t, sh.TETHERED, s)]
            assert tied["method"] == "zprl" and tied["sac"] == {**plain["sac"], "actor_tether": sh.TETHER}
            assert tied["sampler_noise_scale"] == plain["sampler_noise_scale"]
            assert tied["steering"] == plain["steering"] and tied["out"] != plain["out"]
    assert by[("a-v3", sh.TETHERED, 0)]["sampler_noise_scale"] == 0.0  # the rule: ε = 0 at least as good
    assert by[("b-v3", sh.TETHERED, 0)]["sampler_noise_scale"] == 1.0
    assert "actor_tether" not in by[("a-v3", "zprl", 0)]["sac"]  # the check's ZPRL stays untethered


def test_the_tethered_variant_is_counted_against_dsrl_and_checked_to_start_where_zprl_did(tmp_path, monkeypatch):
    monkeypatch.setattr(sh, "ROOT", tmp_path / "holdout")
    monkeypatch.setattr(sh, "picked_settings", lambda key, methods: {m: {} for m in methods})
    tasks = ["a-v3", "b-v3"]
    rec = {"chosen": {t: {"family": "coverage", "shift": "s", "reached": True, "kept": True, "sampled": 0.3,
                          "eps0": 0.4} for t in tasks}}
    for i, t in enumerate(tasks):
        d = sh.ROOT / "base" / f"{t}__base__seed0"
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"final_sampled": 0.3, "final_eps0": 0.4, "final_episodes": 50,
                                                   "final_sampled_jerk": 1e-3, "wall_seconds": 1.0}))
        for s in range(3):
            _run(sh.ROOT, t, "zprl", s, auc=0.6, sampled=0.5, eps0=0.7, dip=-0.3)
            _run(sh.ROOT, t, "dsrl", s, auc=0.5, sampled=0.6, eps0=0.6, dip=-0.05)
            if (i, s) != (1, 2):  # b's third tethered seed has not run
                # a's tether holds the dip; b's tethered seed 1 started elsewhere than the untethered run
                _run(sh.ROOT, t, sh.TETHERED, s, auc=0.55 if i == 0 else 0.45, sampled=0.5, eps0=0.65,
                     dip=0.0 if i == 0 else -0.2, start=0.2 if (i, s) == (1, 1) else 0.4)
    res = sh.collect(fs.Plan(False), tasks, rec, seeds=3, pool=[(t, "coverage") for t in tasks])
    c = res["tether"]["counts"]
    assert res["tether"]["beta"] == sh.TETHER
    assert (c["tasks"], c["auc_ge_dsrl"], c["dip_ge_dsrl"], c["dip_below_-0.10"]) == (2, 1, 1, ["b-v3"])
    assert c["best_is_deployed"] == 2 and c["start_unlike_zprl"] == ["b-v3"] and c["complete"] is False
    assert res["tasks"]["a-v3"]["tether_start_check"] == {"seeds_compared": 3, "success_equal": True}
    assert res["tasks"]["a-v3"]["zprl_tether"]["seeds"] == 3 and res["tasks"]["b-v3"]["zprl_tether"]["seeds"] == 2
    assert res["counts"]["dip_below_-0.10"] == ["a-v3", "b-v3"]  # the check's own counts are the untethered runs'
    text = sh.tether_table(res)
    assert "partial" in text and "**no**" in text and "1/2" in text
    both = sh.draw_tables(res)  # a later draw shows the check's table, then the variant's
    assert both.index("AUC zprl (rule)") < both.index("β = 0.1") and text in both


def test_a_second_draw_walks_on_to_the_next_two_kept_per_family_and_leaves_the_first_alone(tuning, monkeypatch):
    pool = sh.candidates(TASKS)
    cov = [t for t, f in pool if f == "coverage"]
    act = [t for t, f in pool if f == "actuation"]
    # coverage: kept, kept | not kept, kept, kept; actuation: kept, kept | kept, (never reached)
    best = {cov[0]: 0.5, cov[1]: 0.4, cov[2]: 0.02, cov[3]: 0.3, cov[4]: 0.2,
            act[0]: 0.4, act[1]: 0.5, act[2]: 0.3, act[3]: 0.45}
    calls = []

    def fake_cell(task, family, shift, episodes, quick):
        calls.append(task)
        return {"task": task, "family": family, "shift": shift, "episodes": episodes, "sampled": best[task],
                "eps0": best[task], "best": best[task], "seconds": 0.0}

    monkeypatch.setattr(sc, "evaluate_cell", fake_cell)
    sh.calibrate(pool, list(sc.FAMILY_ORDER))
    first = sh.selected(pool, sh.load_record())
    assert first == ([cov[0], cov[1], act[0], act[1]], True) and set(calls) == {cov[0], cov[1], act[0], act[1]}
    assert sh.selected(pool, sh.load_record(), draw=2) == ([], False)  # the second walk has not run
    sh.calibrate(pool, list(sc.FAMILY_ORDER), draw=2)
    rec = sh.load_record()
    assert sh.selected(pool, rec, draw=2) == ([cov[3], cov[4], act[2], act[3]], True)
    assert sh.selected(pool, rec) == first  # drawing on never changes the first draw
    assert act[4] not in calls and not rec["chosen"][cov[2]]["kept"]
    assert sh.results_file(1) == sh.RESULTS_FILE and sh.results_file(2).name == "finetune_shift_holdout_draw2.json"


def test_a_later_draw_runs_the_variant_dsrl_and_zprl_seed_by_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(sh, "base_for", lambda task, family, shift, quick: tmp_path / task)
    monkeypatch.setattr(sh, "picked_settings", lambda key, methods: {m: {} for m in methods})
    rec = {"chosen": {t: {"family": "coverage", "shift": "s", "sampled": 0.3, "eps0": 0.4} for t in ("a-v3", "b-v3")}}
    cells = sh.run_cells(fs.Plan(False), ["a-v3", "b-v3"], rec, seeds=2, draw=2)
    assert [(c["name"], c["seed"], c["task"]) for c in cells] == [
        (n, s, t) for s in range(2) for t in ("a-v3", "b-v3") for n in (sh.TETHERED, "dsrl", "zprl")]
    assert [c["method"] for c in cells[:3]] == ["zprl", "dsrl", "zprl"] and cells[0]["sac"]["actor_tether"] == sh.TETHER
    assert "actor_tether" not in cells[2]["sac"]
