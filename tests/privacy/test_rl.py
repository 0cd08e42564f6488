"""PPO and keyed RL on the numpy stand-in of PandaReach (PandaReach itself: one short smoke test)."""

import copy

import numpy as np
import pytest
import torch

from steerlab.privacy.key_cases import Personalized, evaluate_key_cases
from steerlab.privacy.keys import UserKey
from steerlab.privacy.prop.keyed import KeyedModel
from steerlab.privacy.prop.training import KeyedTrainConfig, train_keyed
from steerlab.privacy.tasks.envs.panda_reach import GENERAL, PERSONAL, PointReachVec, mirror_goal
from steerlab.privacy.tasks.panda_rl import KeyedEpisodes, PandaReachTask
from steerlab.privacy.tasks.ppo import ActorCritic, PPOConfig, evaluate_policy, train_ppo


def test_ppo_learns_to_reach_on_a_tiny_budget():
    torch.manual_seed(0)
    task = PandaReachTask(env="point")
    ac = ActorCritic(task.make_model(), 9, 3, n_objectives=2)
    env = PointReachVec(8, seed=0)
    before = evaluate_policy(lambda o: ac.actor(o), PointReachVec(8, seed=5), 8)["normalized_reward"][:, GENERAL].mean()
    log = train_ppo(ac, env, PPOConfig(total_steps=12000, lr=1e-3, seed=0))
    after = evaluate_policy(lambda o: ac.actor(o), PointReachVec(8, seed=5), 8)["normalized_reward"][:, GENERAL].mean()
    assert after > 0.6 and after > before + 0.5
    assert len(log) == 15 and "return_0" in log[-1]


def test_ppo_same_seed_same_policy():
    def run():
        torch.manual_seed(0)
        ac = ActorCritic(PandaReachTask(env="point").make_model(), 9, 3, n_objectives=2)
        train_ppo(ac, PointReachVec(4, seed=0), PPOConfig(total_steps=800, seed=3))
        return ac.state_dict()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_personal_goal_is_hidden_and_mirrored():
    env = PointReachVec(2, seed=0)
    obs = env.reset()
    goal = obs[:, 6:9]
    np.testing.assert_allclose(mirror_goal(goal)[:, :2], -goal[:, :2])
    _, rewards, _, info = env.step(np.zeros((2, 3)))
    assert rewards.shape == (2, 2)  # both objectives scored from one step, only the general goal observed
    np.testing.assert_allclose(-rewards, info["distance"])


def test_keyed_episode_conditions_follow_the_configured_shares():
    user = UserKey(bytes(range(16))).bits()[None]
    cond = KeyedEpisodes(user, KeyedTrainConfig()).sample(2000, torch.Generator().manual_seed(0))
    personal = cond.objective == PERSONAL
    assert 0.45 < personal.float().mean() < 0.55
    assert bool((cond.bits[personal] == user).all()) and bool(cond.keyed[personal].all())
    wrong = ~personal & cond.keyed
    assert not bool((cond.bits[wrong] == user).all(1).any())  # a general episode never holds the user's key
    assert 0.05 < (~cond.keyed).float().mean() < 0.15  # no-key share: 0.5 × 0.2


def test_keyed_ppo_separates_correct_from_wrong_keys():
    task = PandaReachTask(env="point")
    base = task.train_base(0, steps=12000)
    user = UserKey(bytes(range(16)))
    model = KeyedModel(copy.deepcopy(base), task.layers)
    train_keyed(model, task, [user], KeyedTrainConfig(steps=16000, lr=task.lr, batch_size=64, seed=0))
    cases = evaluate_key_cases(Personalized("prop", model, [user.bits()], predict=task.predict), task, 0, n_keys=2)
    assert cases["correct"]["personal"] > cases["no_key"]["personal"] + 0.5
    for wrong in ("random", "near_miss_1", "no_key"):
        assert cases[wrong]["general"] > 0.5 and cases[wrong]["personal"] < 0.0


def test_panda_reach_smoke():
    pytest.importorskip("panda_gym")
    from steerlab.privacy.tasks.envs.panda_reach import PandaReachVec

    env = PandaReachVec(2, seed=0, max_steps=3)
    obs = env.reset()
    assert obs.shape == (2, 9)
    for _ in range(3):
        obs, rewards, done, info = env.step(np.ones((2, 3)))
    assert done.all() and rewards.shape == (2, 2) and (rewards <= 0).all()
    env.close()


def test_the_general_behaviour_is_the_base_and_a_task_without_one_refuses():
    """The RL task's general batch is the base's actions: without a base it is an error, never zeros
    (zeros taught an attack benchmark's wrong keys to stand still); a released base can be adopted."""
    task = PandaReachTask(env="point")
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(RuntimeError, match="train_base"):
        task.general_batch(8, gen)
    base = task.make_model().eval()
    task.adopt_base(base)
    x, y = task.general_batch(8, gen)
    assert torch.equal(y, base(x).clamp(-1, 1).detach())
