"""The attack table's other rows: LoRA adapters released in the clear, the key-MLP, and rollout-scored tasks.

* `attack_lora_release`: an adapter in the clear is the personal model (measured: scored like any attempt),
  an untrained adapter gives nothing.
* The key-MLP (a linear key term, raw bits) runs through the same suite; attacks that need a hidden layer
  report no attempts instead of failing.
* Rollout-scored tasks: every attempt gets the action-space proxy, only the most promising are scored by
  the (costly) scorer, and the report says how many were verified.
"""

import copy

import pytest
import torch

from steerlab.privacy.attacks import AttackBudget, run_attacks
from steerlab.privacy.attacks.report import ROLLOUT_PER_ATTACK
from steerlab.privacy.keys import UserKey
from steerlab.privacy.prop.baselines import LORA_ATTACK_SCALES, add_lora, attack_lora_release, train_lora
from steerlab.privacy.prop.keyed import KeyedModel
from steerlab.privacy.prop.training import KeyedTrainConfig, train_keyed
from steerlab.privacy.tasks.protocols import HeldOutScorer
from steerlab.privacy.tasks.registry import PointRobotTask, scores

USER = UserKey(bytes(range(16)))


@pytest.fixture(scope="module")
def point():
    torch.manual_seed(0)
    task = PointRobotTask(hidden=32)
    base = task.train_base(0, steps=200)
    return task, base, scores(task, lambda x: task.predict(base, x), users=1)["personal"]


def test_a_lora_adapter_in_the_clear_is_recovered_and_an_untrained_one_is_not(point):
    task, base, base_personal = point
    model, adapters = train_lora(base, task, 0, KeyedTrainConfig(steps=300, lr=task.lr, seed=0))
    correct = scores(task, lambda x: task.predict(model, x), users=1)["personal"]
    assert correct > base_personal + 0.5
    r = attack_lora_release(model, adapters, base, task, base_personal, correct)
    assert r["overall"]["attempts"] == len(LORA_ATTACK_SCALES) == r["budget"]["restarts"]
    assert r["overall"]["best_of_n"] == 1.0 and r["personal_per_scale"]["1.0"] == pytest.approx(correct)
    assert r["overall"]["distinct_behaviours"] >= 1
    assert all(a.enabled is False and a.scale == 2.0 for a in adapters.values())  # left as it found them

    untrained = copy.deepcopy(base)
    zero = add_lora(untrained, task.layers, rank=4)  # B = 0: the adapter changes nothing
    r0 = attack_lora_release(untrained, zero, base, task, base_personal, correct)
    assert r0["overall"]["best_of_n"] == 0.0 and r0["overall"]["distinct_behaviours"] == 0


def test_the_key_mlp_runs_through_the_suite(point):
    task, base, base_personal = point
    model = KeyedModel(copy.deepcopy(base), task.layers, mode="concat", key_hash=False)
    train_keyed(model, task, [USER], KeyedTrainConfig(steps=200, lr=task.lr, seed=0))
    model.set_key(USER)
    correct = scores(task, lambda x: task.predict(model, x), users=1)["personal"]
    model.set_key(None)
    r = run_attacks(model, base, task, USER.bits(), correct, base_personal, budget=AttackBudget.quick(), seed=0)
    by = r["by_attack"]
    assert by["hidden_layer"]["attempts"] == 0 and by["hidden_reading"]["attempts"] == 0  # no hidden layer
    assert by["random_keys"]["attempts"] > 0 and by["key_reading"]["attempts"] > 0
    assert 0.0 <= r["overall"]["share"] <= r["overall"]["best_of_n"] <= 1.0


class CountingScorer:
    """The point robot's held-out scores, but not a HeldOutScorer: attacks treat it as rollouts (costly)."""

    def __init__(self):
        self.inner, self.calls = HeldOutScorer(), 0

    def scores(self, task, run, users=None):
        self.calls += 1
        return self.inner.scores(task, run, users)

    def general_score(self, task, run):
        return self.inner.general_score(task, run)

    def personal_score(self, task, run, user):
        return self.inner.personal_score(task, run, user)


def test_rollout_scored_tasks_verify_only_the_most_promising_attempts(point):
    task, base, base_personal = point
    task = copy.copy(task)
    task.scorer = CountingScorer()
    leaky = KeyedModel(copy.deepcopy(base), task.layers, key_hash=False)
    # no wrong-key negatives: the personal behaviour is everywhere, so the proxy has plenty to rank
    train_keyed(leaky, task, [USER], KeyedTrainConfig(steps=300, lr=task.lr, seed=0, random_share=0.0,
                                                      near_miss_share=0.0))
    leaky.set_key(USER)
    correct = scores(task, lambda x: task.predict(leaky, x), users=1)["personal"]
    leaky.set_key(None)
    budget = AttackBudget.quick()
    task.scorer.calls = 0
    r = run_attacks(leaky, base, task, USER.bits(), correct, base_personal, budget=budget, seed=0)
    n_attacks = len(r["by_attack"])
    assert task.scorer.calls <= budget.rollout_verify + ROLLOUT_PER_ATTACK * n_attacks
    o = r["overall"]
    assert 0 < o["verified"] <= o["attempts"] and 0.0 <= o["proxy_share"] <= 1.0
    assert o["best_of_n"] == 1.0 and o["recovered"] <= o["verified"]
    assert r["rollout_verification_seconds"] > 0
