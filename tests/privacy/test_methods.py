"""The method table (steerlab.privacy.methods): one registry for `personalize` and the benchmark."""

import pytest
import torch

from steerlab.core.errors import UserError
from steerlab.privacy.key_cases import evaluate_key_cases
from steerlab.privacy.keys import UserKey
from steerlab.privacy.methods import METHODS, PersonalizeConfig, build_personalized
from steerlab.privacy.tasks.registry import PointRobotTask


@pytest.fixture(scope="module")
def setup():
    task = PointRobotTask(hidden=32)
    return task, task.train_base(0, steps=100), [UserKey(bytes(range(16)))]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_registered_method_trains_and_is_scored_under_every_key_case(setup, name):
    task, base, users = setup
    before = {k: v.clone() for k, v in base.state_dict().items()}
    p = build_personalized(name, task, base, users, PersonalizeConfig(steps=20))
    cases = evaluate_key_cases(p, task, seed=0, n_keys=2)
    assert set(cases) == {"correct", "random", "near_miss_1", "no_key"}
    assert all(torch.isfinite(torch.tensor(list(d.values()))).all() for d in cases.values())
    assert all(torch.equal(v, before[k]) for k, v in base.state_dict().items())  # the public base is never edited


def test_same_seed_same_numbers(setup):
    task, base, users = setup
    a, b = (evaluate_key_cases(build_personalized("sealed", task, base, users, PersonalizeConfig(steps=20, seed=3)),
                               task, seed=0, n_keys=2) for _ in range(2))
    assert a == b


def test_prop_trains_the_anchor_loss_and_prop_unanchored_does_not(setup):
    task, base, users = setup
    p = build_personalized("prop", task, base, users, PersonalizeConfig(steps=60))
    assert p.log and all("anchor" in row for row in p.log)
    assert "anchor" not in build_personalized("prop_unanchored", task, base, users, PersonalizeConfig(steps=5)).log[0]


def test_bad_method_or_budget_is_a_one_line_error(setup):
    task, base, users = setup
    with pytest.raises(UserError, match="unknown personalization method"):
        build_personalized("prob", task, base, users, PersonalizeConfig(steps=5))
    with pytest.raises(UserError, match="positive"):
        build_personalized("prop", task, base, users, PersonalizeConfig(steps=0))
    two = users + [UserKey(bytes(range(1, 17)))]  # two distinct keys (one key twice is its own error)
    with pytest.raises(UserError, match="one key"):
        build_personalized("finetune", task, base, two, PersonalizeConfig(steps=5))
    with pytest.raises(UserError, match="same key"):
        build_personalized("sealed", task, base, users * 2, PersonalizeConfig(steps=5))
