"""PPO's advantage normalization per objective (keyed PPO mixes personal and general episodes in a batch)."""

import pytest
import torch

from steerlab.envs.panda_reach import PointReachVec
from steerlab.privacy.rl_task import PandaReachTask
from steerlab.rl.ppo import ActorCritic, PPOConfig, normalize_advantages, train_ppo


def _mixed_batch():
    """General advantages small and centred; personal ones 10x larger and biased (an untrained critic)."""
    g = torch.Generator().manual_seed(0)
    obj = (torch.rand(256, generator=g) < 0.5).long()
    adv = torch.where(obj == 0, 0.1 * torch.randn(256, generator=g), -5.0 + 2.0 * torch.randn(256, generator=g))
    return adv, obj


def test_each_objective_gets_zero_mean_unit_std_advantages():
    adv, obj = _mixed_batch()
    a = normalize_advantages(adv, obj)
    for o in (0, 1):
        assert abs(float(a[obj == o].mean())) < 1e-5
        assert abs(float(a[obj == o].std()) - 1.0) < 1e-4
    # one normalization over the mixed batch: every general sample gets a positive advantage (reinforced
    # whatever its outcome, its spread squashed) and the personal ones are biased negative
    b = normalize_advantages(adv)
    assert bool((b[obj == 0] > 0).all()) and float(b[obj == 0].std()) < 0.1 and float(b[obj == 1].mean()) < -0.5


def test_one_objective_is_exactly_the_batch_normalization():
    """Plain PPO (base, fine-tuning, LoRA) trains on one objective: its numbers must not change."""
    adv, _ = _mixed_batch()
    one = torch.ones(len(adv), dtype=torch.long)
    assert torch.equal(normalize_advantages(adv, one), normalize_advantages(adv))


def test_a_lone_sample_is_centred_not_nan():
    a = normalize_advantages(torch.tensor([1.0, 2.0, 3.0, 7.0]), torch.tensor([0, 0, 0, 1]))
    assert torch.isfinite(a).all() and float(a[3]) == 0.0


def test_single_objective_training_is_the_same_under_either_setting():
    def run(mode):
        torch.manual_seed(0)
        ac = ActorCritic(PandaReachTask(env="point").make_model(), 9, 3, n_objectives=2)
        log = train_ppo(ac, PointReachVec(4, seed=0), PPOConfig(total_steps=800, seed=3, adv_norm=mode))
        return ac.state_dict(), log

    (a, log_a), (b, log_b) = run("objective"), run("batch")
    assert all(torch.equal(a[k], b[k]) for k in a) and log_a == log_b
    assert {"adv_mean_0", "adv_std_0", "log_std"} <= set(log_a[-1])


def test_unknown_normalization_is_refused():
    ac = ActorCritic(PandaReachTask(env="point").make_model(), 9, 3)
    with pytest.raises(ValueError, match="adv_norm"):
        train_ppo(ac, PointReachVec(2, seed=0), PPOConfig(total_steps=200, adv_norm="global"))
