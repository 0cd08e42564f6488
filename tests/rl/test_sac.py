import math

import numpy as np
import pytest
import torch

from steerlab.rl.replay import ReplayBuffer
from steerlab.rl.sac import SAC, Actor, SACConfig

CFG = dict(hidden=32, batch_size=32)


def _batch(n=32, obs_dim=3, act_dim=2, terminated=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(n, obs_dim, generator=g), "action": torch.rand(n, act_dim, generator=g) * 2 - 1,
            "reward": torch.randn(n, generator=g), "next_obs": torch.randn(n, obs_dim, generator=g),
            "discount": torch.full((n,), 0.99**2), "terminated": torch.full((n,), terminated)}


def test_polyak_target_update_exact():
    sac = SAC(3, 2, SACConfig(**CFG, tau=0.1, target_update_interval=2))
    before_target = [p.clone() for p in sac.critic_target.parameters()]
    sac.update(_batch())  # update 1: no target update (interval 2)
    for t, b in zip(sac.critic_target.parameters(), before_target):
        assert torch.equal(t, b)
    online_before = [p.clone() for p in sac.critic.parameters()]
    sac.update(_batch(seed=1))
    for t, b, s in zip(sac.critic_target.parameters(), before_target, sac.critic.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * s)
    assert any(not torch.equal(a, b) for a, b in zip(online_before, sac.critic.parameters()))


@pytest.mark.parametrize("log_std,should_rise", [(-4.5, True), (0.0, False)])
def test_entropy_tuning_sign(log_std, should_rise):
    """α rises when the entropy is below target (narrow policy), falls when above (std 1: tanh(N(0, 1))
    has entropy ≈ 0.68 nats per dimension, above the target of −0.5)."""
    sac = SAC(3, 2, SACConfig(**CFG, init_temperature=0.1, actor_lr=0.0))
    with torch.no_grad():  # pin the policy's std via the log_std head's bias
        sac.actor.log_std.weight.zero_()
        x = (log_std - sac.actor.log_std_min) / (0.5 * (sac.actor.log_std_max - sac.actor.log_std_min)) - 1
        sac.actor.log_std.bias.fill_(math.atanh(x))
    a0 = sac.alpha.item()
    for i in range(5):
        sac.update(_batch(seed=i))
    assert (sac.alpha.item() > a0) == should_rise


def test_truncation_bootstraps_termination_does_not():
    sac = SAC(3, 2, SACConfig(**CFG))
    cont, term = _batch(terminated=0.0), _batch(terminated=1.0)
    heads = torch.tensor([0, 1])
    state = sac.gen.get_state()
    t_cont = sac.critic_target_value(cont, heads)
    sac.gen.set_state(state)
    # recompute by hand with the same sampled next action
    next_a, next_logp = sac.actor.sample(cont["next_obs"], sac.gen)
    with torch.no_grad():
        q = sac.critic_target(torch.cat([cont["next_obs"], next_a], -1))
        expected = cont["reward"] + cont["discount"] * (q.min(0).values - sac.alpha * next_logp)
    torch.testing.assert_close(t_cont, expected)
    torch.testing.assert_close(sac.critic_target_value(term, heads), term["reward"])


def test_redq_min_over_a_random_pair():
    sac = SAC(3, 2, SACConfig(**CFG, num_critics=5, critic_pair=2))
    b = _batch()
    with torch.no_grad():  # make head h predict exactly h (+ tiny input-dependence-free offset)
        for layer in (sac.critic_target.l3,):
            layer.weight.zero_()
            layer.bias.copy_(torch.arange(5.0).view(5, 1, 1))
    b["discount"] = torch.ones(32)
    sac.cfg.init_temperature = 0.0
    sac.log_alpha.data.fill_(-50.0)  # α ≈ 0: the target is r + min over the drawn heads
    seen = set()
    for _ in range(30):
        v = (sac.critic_target_value(b) - b["reward"]).round(decimals=4)
        assert torch.all(v == v[0])
        seen.add(float(v[0]))
    assert seen <= {0.0, 1.0, 2.0, 3.0} and len(seen) > 1  # min of 2 of 5 heads is never the max head


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    actor = Actor(1, 1, 8, -5, 2)
    obs = torch.zeros(20000, 1)
    a, logp = actor.sample(obs, torch.Generator().manual_seed(0))
    mean, log_std = actor(obs[:1])
    u = torch.atanh(a.clamp(-0.999999, 0.999999))
    base = torch.distributions.Normal(mean, log_std.exp()).log_prob(u).sum(-1)
    expected = base - torch.log(1 - a.pow(2) + 1e-12).sum(-1)
    ok = a.abs().squeeze(-1) < 0.99
    torch.testing.assert_close(logp[ok], expected[ok], atol=1e-3, rtol=1e-3)


def test_learns_a_one_step_bandit():
    torch.manual_seed(0)
    sac = SAC(2, 1, SACConfig(hidden=64, batch_size=64, actor_lr=3e-3, critic_lr=3e-3, init_temperature=0.01))
    rb = ReplayBuffer(5000, 2, 1, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(600):
        obs = rng.standard_normal((8, 2)).astype(np.float32)
        target = np.tanh(obs[:, :1])
        a = sac.act(obs)
        rb.add(obs, a, -((a - target) ** 2).sum(1), obs, np.ones(8), np.ones(8))
        sac.update(rb.sample(64))
    obs = rng.standard_normal((256, 2)).astype(np.float32)
    err = np.abs(sac.act(obs, deterministic=True) - np.tanh(obs[:, :1])).mean()
    assert err < 0.15


def test_save_load_then_identical_updates(tmp_path):
    a = SAC(3, 2, SACConfig(**CFG), seed=1)
    for i in range(5):
        a.update(_batch(seed=i))
    a.save(tmp_path / "sac")
    b = SAC(3, 2, SACConfig(**CFG), seed=99)
    b.load(tmp_path / "sac")
    for i in range(5, 9):
        a.update(_batch(seed=i))
        b.update(_batch(seed=i))
    ta, _ = a.state_dict()
    tb, _ = b.state_dict()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


def test_same_seed_same_actions_and_parameters():
    runs = []
    for _ in range(2):
        sac = SAC(3, 2, SACConfig(**CFG), seed=3)
        for i in range(3):
            sac.update(_batch(seed=i))
        runs.append((sac.act(np.ones((4, 3), np.float32)), sac.state_dict()[0]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_critic_action_fn_changes_critic_input():
    sac = SAC(5, 2, SACConfig(**CFG), critic_action_fn=lambda o, a: o[:, :2] + 0.3 * a)
    assert sac.critic.l1.weight.shape[1] == 5 + 2
    logs = sac.update(_batch(obs_dim=5))
    assert np.isfinite(list(logs.values())).all()


def test_bad_inputs():
    sac = SAC(3, 2, SACConfig(**CFG))
    with pytest.raises(ValueError, match="shape"):
        sac.act(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        sac.act(np.full((1, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="critic_pair"):
        SACConfig(num_critics=2, critic_pair=3)


def test_replay_round_trip_and_wraparound(tmp_path):
    rb = ReplayBuffer(10, 2, 1, seed=0)
    for i in range(13):
        rb.add(np.full((1, 2), i), [[i]], [i], np.full((1, 2), i + 1), [0.99], [0.0])
    assert len(rb) == 10 and rb.ptr == 3 and rb.reward[0] == 10
    rb.save(tmp_path / "rb.npz")
    rb2 = ReplayBuffer(10, 2, 1, seed=5)
    rb2.load(tmp_path / "rb.npz")
    s1, s2 = rb.sample(6), rb2.sample(6)
    for k, v in s1.items():
        torch.testing.assert_close(v, s2[k])
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="corrupt"):
        rb2.load(tmp_path / "bad.npz")
