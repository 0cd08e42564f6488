"""The attack suite finds what a model built to leak gives away, and finds nothing in the plain base.

Models (point robot, seconds to train):
* `leaky`: PRoP trained with the personal loss and no wrong-key negatives, on raw key bits, and with the
  personal loss under arbitrary gates too: keys, encoder inputs, hidden activations, gates and the
  encoders' singular vectors all lead to the personal behaviour.
* `leaky_weights`: the personal behaviour fine-tuned into the weights themselves (no key needed).
* `plain`: the public base wrapped with fresh, untrained key encoders: nothing personal to find.
"""

import copy
import json

import pytest
import torch

from steerlab.cli import main
from steerlab.privacy.attacks import ATTACKS, AttackBudget, Found, register, run_attacks
from steerlab.privacy.attacks.registry import ATTACKS as REGISTRY
from steerlab.privacy.keys import UserKey
from steerlab.privacy.prop.baselines import train_finetune
from steerlab.privacy.prop.keyed import KeyedModel
from steerlab.privacy.prop.training import KeyedTrainConfig, train_keyed
from steerlab.privacy.tasks.registry import PointRobotTask, scores

USER = UserKey(bytes(range(16)))
BUDGET = AttackBudget.quick()


def _personal(task, m):
    return scores(task, lambda x: task.predict(m, x), users=1)["personal"]


def _any_gate_unlocks(model, task, step, gen):
    """Leak by construction: personal behaviour under arbitrary gates (uniform in the box, and its corners)."""
    x, y = task.personal_batch(0, 64, gen)
    d = {n: torch.rand(len(x), k, generator=gen) * 2 - 1 for n, k in model.gate_dims().items()}
    d = {n: torch.where(torch.arange(len(x))[:, None] % 2 == 0, v, torch.sign(v)) for n, v in d.items()}
    with model.use_deltas(d):
        return task.loss(model, x, y)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    task = PointRobotTask(hidden=32)
    base = task.train_base(0, steps=200)
    leaky = KeyedModel(copy.deepcopy(base), task.layers, key_hash=False)
    train_keyed(leaky, task, [USER], KeyedTrainConfig(steps=400, seed=0, random_share=0.0, near_miss_share=0.0),
                extra_loss=_any_gate_unlocks)
    leaky.set_key(USER)
    correct = _personal(task, leaky)
    leaky.set_key(None)
    weights = KeyedModel(train_finetune(base, task, 0, KeyedTrainConfig(steps=200, seed=0)), task.layers)
    plain = KeyedModel(copy.deepcopy(base), task.layers)
    return task, base, {"leaky": leaky, "leaky_weights": weights, "plain": plain}, correct, _personal(task, base)


@pytest.fixture(scope="module")
def reports(setup):
    task, base, models, correct, base_personal = setup
    return {name: run_attacks(m, base, task, USER.bits(), correct, base_personal, budget=BUDGET, seed=0)
            for name, m in models.items()}


def test_the_leaky_models_leak(setup):
    task, _, models, correct, base_personal = setup
    assert correct > 0.9 and base_personal < 0.1
    assert _personal(task, models["leaky_weights"]) > 0.9  # the attack target really is in the weights


LEAKS_TO = {"weight_amplification": "leaky_weights"}  # every other attack: the keyed model without negatives


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_each_attack_recovers_a_model_built_to_leak(reports, attack):
    r = reports[LEAKS_TO.get(attack, "leaky")]["by_attack"][attack]
    assert r["attempts"] > 0
    assert r["best_of_n"] == 1.0 and r["recovered"] >= 1
    assert r["personal_behaviours"] >= 1  # the recovered behaviour is seen on public inputs


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_no_attack_recovers_anything_from_the_plain_base(reports, attack):
    r = reports["plain"]["by_attack"][attack]
    assert r["best_of_n"] == 0.0 and r["recovered"] == 0 and r["personal_behaviours"] == 0


def test_overall_pools_the_keyless_attacks_only(reports):
    r = reports["leaky"]
    by = r["by_attack"]
    pooled = [n for n in by if not by[n]["uses_key"]]
    assert by["near_keys"]["uses_key"] and "near_keys" not in pooled
    assert r["overall"]["attempts"] == sum(by[n]["attempts"] for n in pooled)
    assert r["overall"]["recovered"] == sum(by[n]["recovered"] for n in pooled)
    assert r["overall"]["share"] == pytest.approx(r["overall"]["recovered"] / r["overall"]["attempts"])
    assert r["overall"]["best_of_n"] == 1.0
    assert reports["plain"]["overall"]["best_of_n"] == 0.0


def test_distinct_behaviours_count_clusters_not_attempts(reports):
    r = reports["leaky"]["by_attack"]["hidden_layer"]
    # many attempts recover; they are one behaviour (the personal one), the most frequent one found
    assert r["recovered"] >= 2 and r["personal_behaviours"] == 1 and r["largest_is_personal"]
    assert 1 <= r["distinct_behaviours"] <= r["non_base"]


def test_same_seed_same_report(setup, reports):
    task, base, models, correct, base_personal = setup
    again = run_attacks(models["leaky"], base, task, USER.bits(), correct, base_personal, budget=BUDGET, seed=0,
                        attacks=["hidden_layer", "evolution"])
    for name in ("hidden_layer", "evolution"):
        a, b = again["by_attack"][name], reports["leaky"]["by_attack"][name]
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


def test_a_new_attack_is_one_registration(setup):
    task, base, models, correct, base_personal = setup

    @register("test_only_all_ones", "δ = 1 everywhere: the no-key model")
    def all_ones(t):
        return Found(deltas={n: torch.ones(3, d) for n, d in t.model.gate_dims().items()}, evaluations=3)

    try:
        r = run_attacks(models["plain"], base, task, USER.bits(), correct, base_personal, budget=BUDGET,
                        attacks=["test_only_all_ones"])
        assert r["by_attack"]["test_only_all_ones"]["attempts"] == 3
        assert r["by_attack"]["test_only_all_ones"]["non_base"] == 0  # the plain model with δ = 1 is the base
    finally:
        del REGISTRY["test_only_all_ones"]
    with pytest.raises(ValueError, match="unknown attack"):
        run_attacks(models["plain"], base, task, USER.bits(), correct, base_personal, attacks=["nope"])


def test_attack_cli_prints_the_table_and_writes_json_beside_the_model(tmp_path, capsys):
    keyfile = tmp_path / "alice.key"
    assert main(["keygen", "--out", str(keyfile)]) == 0
    run = tmp_path / "run"
    # a keyed model must be asked for now (sealed is the default), and it is released with a warning
    assert main(["personalize", "--task", "point_robot", "--keys", str(keyfile), "--out", str(run), "--steps", "20",
                 "--method", "prop"]) == 0
    said = capsys.readouterr()
    assert "recoverable" in said.err and "NOT private" in said.out and "keep your key files private" not in said.out
    before = sorted(p.name for p in run.rglob("*"))
    out = tmp_path / "report.json"
    assert main(["attack", str(run), "--key", str(keyfile), "--quick", "--attacks", "hidden_layer", "key_reading",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "hidden_layer" in printed and "best-of-N" in printed and "overall (no key)" in printed
    report = json.loads(out.read_text())
    assert set(report["by_attack"]) == {"hidden_layer", "key_reading"} and "overall" in report
    assert sorted(p.name for p in run.rglob("*")) == before  # nothing written into the input
    # refuses to overwrite the report, to write into the model folder, and unknown attacks: one line, exit 2
    assert main(["attack", str(run), "--key", str(keyfile), "--quick", "--out", str(out)]) == 2
    assert main(["attack", str(run), "--key", str(keyfile), "--quick", "--out", str(run / "a.json")]) == 2
    assert main(["attack", str(run), "--key", str(keyfile), "--attacks", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


class _SizedByInputTask(PointRobotTask):
    """A task whose prediction sizes a tensor by the input batch and checks it, as a flow policy's sampler
    does with its noise: candidates cannot be batched inside the model, the attack must run them whole."""

    def predict(self, model, x):
        out = model(x)
        if out.shape[0] != len(x):
            from steerlab.core.errors import UserError

            raise UserError(f"noise must have shape ({len(x)}, ...), got ({out.shape[0]}, ...)")
        return out


def test_attacks_run_on_models_whose_prediction_is_sized_by_the_input_batch(setup):
    from steerlab.privacy.attacks.core import Target

    task, base, models, _, _ = setup
    sized = _SizedByInputTask(hidden=32)
    target = Target(models["plain"], base, sized, BUDGET, seed=0)
    assert target.expand_at is None  # no shortcut: the widened batch fails the task's own check
    deltas = {n: torch.zeros(3, k) for n, k in models["plain"].gate_dims().items()}
    assert target.outputs(deltas, target.probe[:4]).shape[:2] == (3, 4)
