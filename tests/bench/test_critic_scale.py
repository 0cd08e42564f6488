"""`steerlab bench critic_scale`: one critic variant laid over every method alike, each run set beside the same
method's bench-critic run at the same seed, and the ZPRL-vs-DSRL ranking counted under both critics."""

import json

import pytest

from steerlab.bench import critic_scale as cs
from steerlab.bench import finetune_shift as fs
from steerlab.bench import shift_rule as sr


@pytest.fixture
def plan(tmp_path, monkeypatch):
    monkeypatch.setattr(cs, "ROOT", tmp_path / "critic")
    monkeypatch.setattr(sr, "ROOT", tmp_path / "rule")
    p = fs.Plan(quick=False)
    p.base_root, p.grid_root = tmp_path / "base", tmp_path / "grid"
    return p


def _run(root, task, method, seed, auc, sampled, eps0):
    d = root / f"{task}__{method}__seed{seed}"
    d.mkdir(parents=True)
    (d / "result.json").write_text(json.dumps({"seed": seed, "final_episodes": 50, "final_sampled": sampled,
                                               "final_eps0": eps0, "auc": auc, "final_eval_success": sampled}))


def test_a_variant_changes_only_the_critic_and_keeps_each_methods_mode(plan, monkeypatch):
    picked = {"zprl": {"setting": {"latent_rms_ratio": 0.3}},
              "dsrl": {"setting": {"noise_magnitude": 1.5, "target_entropy_per_dim": -0.5}}}
    monkeypatch.setattr(fs, "load_cell", lambda path: {plan.sweep_key: {"picked": picked}})
    monkeypatch.setattr(fs, "noise_dim", lambda base: 32)
    t = "box-close-v3"
    zprl, dsrl = cs.cells(plan, "layernorm", [t], 1, ["zprl", "dsrl"], {t: "b"}, {t: "s"}, {t: 0.0}, "cpu")
    assert zprl["sampler_noise_scale"] == 0.0 and dsrl["sampler_noise_scale"] == 1.0  # the rule's mode; DSRL's own
    assert zprl["sac"] == {"critic_layer_norm": True} and zprl["steering"] == {"latent_rms_ratio": 0.3}
    assert dsrl["sac"] == {"target_entropy": -16.0, "critic_layer_norm": True}
    assert zprl["out"].endswith("critic/layernorm/box-close-v3__zprl__seed0") and zprl["device"] == "cpu"
    (paper,) = cs.cells(plan, "dsrl-paper", [t], 1, ["zprl"], {t: "b"}, {t: "s"}, {t: 0.0}, "cuda")
    assert paper["sac"] == {"critic_hidden": 2048, "critic_layers": 3, "critic_layer_norm": True, "utd": 20}


def test_the_ranking_is_counted_under_both_critics_over_the_pairs_both_have(plan):
    tasks = ["assembly-v3", "box-close-v3"]
    v = cs.ROOT / "layernorm"
    for t in tasks:  # bench critic: ZPRL ahead on AUC on both tasks
        _run(sr.ROOT, t, "zprl", 0, auc=0.7, sampled=0.6, eps0=0.8)
        _run(plan.grid_root, t, "dsrl", 0, auc=0.6, sampled=0.7, eps0=0.7)
    # LayerNorm: ZPRL falls behind DSRL on box-close only; a dsrl run on assembly at seed 1 has no zprl pair
    _run(v, "assembly-v3", "zprl", 0, auc=0.65, sampled=0.6, eps0=0.9)
    _run(v, "assembly-v3", "dsrl", 0, auc=0.55, sampled=0.7, eps0=0.7)
    _run(v, "box-close-v3", "zprl", 0, auc=0.5, sampled=0.5, eps0=0.6)
    _run(v, "box-close-v3", "dsrl", 0, auc=0.6, sampled=0.6, eps0=0.6)
    _run(v, "assembly-v3", "dsrl", 1, auc=0.9, sampled=0.9, eps0=0.9)
    out = cs.collect(plan, tasks, list(cs.METHODS))
    rk = out["variants"]["layernorm"]["ranking"]
    assert rk["pairs"] == ["assembly-v3 seed 0", "box-close-v3 seed 0"]
    assert (rk["zprl_ge_dsrl_auc_bench"], rk["zprl_ge_dsrl_auc_variant"]) == (2, 1)
    assert rk["ranking_changed_auc"] == ["box-close-v3 seed 0"]
    assert (rk["zprl_ge_dsrl_final_best_bench"], rk["zprl_ge_dsrl_final_best_variant"]) == (2, 2)
    assert out["variants"]["layernorm"]["tasks"]["assembly-v3"]["dsrl"][1]["bench"] is None
    assert (rk["mean_auc_zprl_bench"], rk["mean_auc_zprl_variant"]) == (pytest.approx(0.7), pytest.approx(0.575))
    assert (rk["mean_auc_dsrl_bench"], rk["mean_auc_dsrl_variant"]) == (pytest.approx(0.6), pytest.approx(0.575))
    text = cs.table(json.loads(json.dumps(out)))  # as read back from the results file (seeds become strings)
    assert "| box-close-v3 | zprl | 0 | 0.700 | 0.500 | 0.80 | 0.60 |" in text
    assert "AUC 2/2 with the bench critic, 1/2 with `layernorm`" in text and "AUC box-close-v3 seed 0" in text
    assert "zprl 0.700 → 0.575, dsrl 0.600 → 0.575" in text
    assert "dsrl-paper" not in out["variants"]  # nothing run with it: not reported
