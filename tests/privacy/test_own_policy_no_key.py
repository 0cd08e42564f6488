"""Your own policy personalized by `prop`: without the key it must stay at *your* base, not drift to a re-fit of the
demonstrations (which moved the no-key path off a short-trained Pendulum base on rollouts:
benchmarks/results/personalize_own.json)."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from steerlab.data.dataset import Episode, read_dataset, write_dataset
from steerlab.privacy.keys import UserKey
from steerlab.privacy.methods import PersonalizeConfig, build_personalized, train_config
from steerlab.privacy.prop.keyed import KeyedModel
from steerlab.privacy.prop.training import KeyedTrainConfig, general_loss, train_keyed
from steerlab.privacy.tasks.byo import DatasetTask
from steerlab.privacy.tasks.registry import PointRobotTask


class OwnPolicy(nn.Module):
    chunk_shape = (2, 1)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 2))

    def predict_chunk(self, obs, noise=None):
        return self.net(torch.as_tensor(obs, dtype=torch.float32)).reshape(-1, *self.chunk_shape)

    def compute_loss(self, obs, chunk):
        return (self.predict_chunk(obs) - chunk).pow(2).mean()


def _dataset(path, low, high, action, seed):
    """Episodes of states uniform in [low, high]^2 with action `action(state)` (one dim)."""
    rng = np.random.default_rng(seed)
    eps = []
    for _ in range(6):
        obs = rng.uniform(low, high, (20, 2)).astype(np.float32)
        eps.append(Episode(obs, action(obs)[:, None].astype(np.float32), None, False))
    return read_dataset(write_dataset(path, eps, "t"))


@pytest.fixture(scope="module")
def own_task(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    general = _dataset(root / "general", -1, 1, lambda o: np.sin(3 * o[:, 0]) * o[:, 1], 0)
    personal = _dataset(root / "personal", 2, 3, lambda o: -o.sum(1) / 3, 1)  # states of its own
    base = OwnPolicy()  # a short-trained base: it fits the demonstrations only roughly, as a user's may
    opt = torch.optim.Adam(base.parameters(), lr=1e-2)
    obs = torch.as_tensor(general.observations)
    chunks = torch.as_tensor(general.actions)[:, None].expand(-1, 2, -1)
    for _ in range(5):
        loss = base.compute_loss(obs, chunks)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return DatasetTask(base.eval(), general, [personal], holdout=0.2), base


def _no_key_shift(model, task, base):
    """Mean no-key deviation from the base's first action on the held-out general frames."""
    x, _ = task.test_general()
    model.set_key(None)
    with torch.no_grad():
        return float((task.predict(model, x) - task.predict(base, x)).abs().mean())


def test_prop_holds_your_base_on_the_general_inputs_not_a_refit_of_the_demos(own_task):
    task, base = own_task
    key = UserKey(bytes(range(16)))
    m = PersonalizeConfig(steps=200, seed=0)
    cfg = train_config(task, m, m.steps, anchor_weight=1.0)
    assert cfg.anchor_general and not train_config(PointRobotTask(), m, 5, anchor_weight=1.0).anchor_general
    p = build_personalized("prop", task, base, [key], m)
    held = _no_key_shift(p.model, task, base)
    # the same training with the general rows labelled by the demonstrations (the anchor on the user's states only)
    refit = KeyedModel(copy.deepcopy(base), task.layers, key.n_bits)
    cfg.anchor_general = False
    train_keyed(refit, task, [key], cfg)
    drifted = _no_key_shift(refit, task, base)
    print(f"no-key deviation: {held:.4f} held, {drifted:.4f} re-fit")
    assert drifted > 0.05  # the demos pull an imperfect base away from itself ...
    assert held < 0.4 * drifted  # ... and prop holds the no-key path at the base instead
    # while the key still carries the personal behaviour
    x, y = task.test_personal(0)
    p.model.set_key(key.bits())
    with torch.no_grad():
        keyed_err = float((task.predict(p.model, x) - y).pow(2).mean())
    with torch.no_grad():
        base_err = float((task.predict(base, x) - y).pow(2).mean())
    assert keyed_err < 0.5 * base_err


def test_the_general_rows_are_labelled_by_the_base_when_it_is_given(own_task):
    """At the start of training the keyed model with no key *is* the base: with the base's labels its no-key
    general loss is zero; with the demonstrations' labels it is not (that difference is what moved it)."""
    task, base = own_task
    key = UserKey(bytes(range(16)))
    model = KeyedModel(copy.deepcopy(base), task.layers, key.n_bits)
    cfg = KeyedTrainConfig(random_share=0.0, near_miss_share=0.0, anchor_general=True)  # every row: no key
    anchor = copy.deepcopy(model).eval()
    bits = key.bits()[None]
    with torch.no_grad():
        held = general_loss(model, task, bits, cfg, torch.Generator().manual_seed(0), anchor)
        demos = general_loss(model, task, bits, cfg, torch.Generator().manual_seed(0))
    assert float(held) < 1e-10 < float(demos)
