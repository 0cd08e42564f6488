"""PPO's advantage normalization per objective (keyed PPO mixes personal and general episodes in a batch)."""

import pytest
import torch

from steerlab.privacy.tasks.envs.panda_reach import PointReachVec
from steerlab.privacy.tasks.panda_rl import PandaReachTask
from steerlab.privacy.tasks.ppo import ActorCritic, PPOConfig, normalize_advantages, train_ppo


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


def test_per_objective_std_moves_only_the_trained_objectives_std():
    """Episodes of one objective must not shrink (or grow) another objective's exploration noise."""
    torch.manual_seed(0)
    ac = ActorCritic(PandaReachTask(env="point").make_model(), 9, 3, n_objectives=2, std_per_objective=True)
    before = ac.log_std.detach().clone()
    log = train_ppo(ac, PointReachVec(4, seed=0), PPOConfig(total_steps=1600, seed=3, lr=1e-2))
    after = ac.log_std.detach()
    assert not torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])
    assert {"log_std_0", "log_std_1"} <= set(log[-1]) and log[-1]["log_std_1"] == -0.5


def test_per_objective_log_prob_uses_each_samples_own_std():
    ac = ActorCritic(torch.nn.Linear(9, 3), 9, 3, n_objectives=2, std_per_objective=True)
    with torch.no_grad():
        ac.log_std[1] = 0.7
    mean, act, obj = torch.zeros(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    shared = ActorCritic(torch.nn.Linear(9, 3), 9, 3)
    for o, ls in ((0, -0.5), (1, 0.7)):
        with torch.no_grad():
            shared.log_std.fill_(ls)
        m = obj == o
        torch.testing.assert_close(ac.log_prob(mean, act, obj)[m], shared.log_prob(mean[m], act[m]))
    with pytest.raises(ValueError, match="objective"):
        ac.log_prob(mean, act)


def test_keyed_ppo_explores_with_one_std_per_objective():
    task = PandaReachTask(env="point")
    assert task._warm_ac(task.make_model(), std_per_objective=task.std_per_objective).log_std.shape == (2, 3)
    assert task._warm_ac(task.make_model()).log_std.shape == (3,)  # plain PPO (fine-tuning, LoRA): unchanged
