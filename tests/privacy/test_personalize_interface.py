"""`personalize --base`'s own-policy interface: checked up front (one line naming the missing piece), gradients
handled by the library, and a summary a person can read."""

import numpy as np
import pytest
import torch
from torch import nn

from steerlab.core.errors import UserError
from steerlab.data.dataset import Episode, write_dataset
from steerlab.privacy.summary import run_it, score_table
from steerlab.privacy.tasks.byo import DatasetTask, check_personalizable


class Chunky(nn.Module):
    chunk_shape = (3, 2)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(4, 6)

    def predict_chunk(self, obs, noise=None):  # returns a tensor that requires grad
        return self.net(torch.as_tensor(obs, dtype=torch.float32)).reshape(-1, 3, 2)

    def compute_loss(self, obs, chunk):
        return (self.predict_chunk(obs) - chunk).pow(2).mean()


def _ds(tmp_path, name, act_dim=2, shift=0.0):
    rng = np.random.default_rng(0)
    eps = [Episode(rng.standard_normal((8, 4)).astype(np.float32),
                   (rng.standard_normal((8, act_dim)) * 0.1 + shift).astype(np.float32), None, False) for _ in range(3)]
    return write_dataset(tmp_path / name, eps, "t")


@pytest.mark.parametrize("broken, piece", [
    (lambda p: setattr(p, "chunk_shape", None), r"lacks chunk_shape = \(horizon, action_dim\)"),
    (lambda p: setattr(p, "compute_loss", None), "lacks the method compute_loss"),
    (lambda p: setattr(p, "predict_chunk", 3), "lacks the method predict_chunk"),
])
def test_a_missing_piece_is_named(broken, piece):
    policy = Chunky()
    broken(policy)
    with pytest.raises(UserError, match=piece):
        check_personalizable(policy)
    with pytest.raises(UserError, match="must be a torch.nn.Module"):
        check_personalizable(object())


def test_interface_is_checked_on_the_data_before_training(tmp_path):
    from steerlab.data.dataset import read_dataset

    good, wide = read_dataset(_ds(tmp_path, "g")), read_dataset(_ds(tmp_path, "w", act_dim=3))
    with pytest.raises(UserError, match="personal #1 dataset has 3-dim actions, the policy 2"):
        DatasetTask(Chunky(), good, [wide])

    class NoGrad(Chunky):
        def compute_loss(self, obs, chunk):
            return 1.0  # a number, not a tensor: nothing to train

    with pytest.raises(UserError, match="compute_loss must return a scalar tensor that gradients flow through"):
        DatasetTask(NoGrad(), good, [good])

    class WrongShape(Chunky):
        def predict_chunk(self, obs, noise=None):
            return super().predict_chunk(obs).reshape(-1, 6)

    with pytest.raises(UserError, match=r"predict_chunk returned shape \(2, 6\)"):
        DatasetTask(WrongShape(), good, [good])


def test_a_predict_chunk_that_requires_grad_personalizes(tmp_path):
    from steerlab.data.dataset import read_dataset
    from steerlab.privacy.key_cases import evaluate_key_cases
    from steerlab.privacy.keys import generate_key
    from steerlab.privacy.methods import PersonalizeConfig, build_personalized

    general, personal = read_dataset(_ds(tmp_path, "g")), read_dataset(_ds(tmp_path, "p", shift=0.5))
    task = DatasetTask(Chunky(), general, [personal], holdout=0.0)
    assert task.predict(task.base_policy, torch.zeros(2, 4)).requires_grad is False
    base = task.train_base(0)
    p = build_personalized("prop", task, base, [generate_key(128)], PersonalizeConfig(steps=60, seed=0))
    cases = evaluate_key_cases(p, task, 0, n_keys=2)
    assert cases["correct"]["personal"] > cases["no_key"]["personal"]


def test_summary_is_a_labelled_table_with_the_base_row():
    cases = {"correct": {"general": 0.1, "personal": 0.9}, "random": {"general": 0.8, "personal": 0.2},
             "near_miss_1": {"general": 0.8, "personal": 0.21}, "no_key": {"general": 0.8, "personal": 0.2}}
    table = score_table(cases, {"general": 0.81, "personal": 0.19}, "R² of the first action")
    lines = table.splitlines()
    assert lines[0] == "metric: R² of the first action"
    assert lines[1].split() == ["policy", "general", "personal"]
    assert lines[3].split()[-2:] == ["0.810", "0.190"] and lines[3].startswith("base")
    assert [ln.split("  ")[0].strip() for ln in lines[3:8]] == [
        "base (no personalization)", "with the user's key", "no key", "wrong key (random)", "wrong key (1 bit off)"]
    assert run_it("runs/my release", "a.key", "Pendulum-v1") == \
        "steerlab evaluate 'runs/my release' --key a.key --env Pendulum-v1"
    assert run_it("rel", "a.key", None) == "steerlab evaluate rel --key a.key"
