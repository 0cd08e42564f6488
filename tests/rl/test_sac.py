import json
import math

import numpy as np
import pytest
import torch

from steerlab.rl.replay import ReplayBuffer
from steerlab.rl.sac import SAC, Actor, SACConfig, tanh_gaussian_log_prob

CFG = dict(hidden=32, batch_size=32)


def _batch(n=32, obs_dim=3, act_dim=2, terminated=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(n, obs_dim, generator=g), "action": torch.rand(n, act_dim, generator=g) * 2 - 1,
            "reward": torch.randn(n, generator=g), "next_obs": torch.randn(n, obs_dim, generator=g),
            "discount": torch.full((n,), 0.99**2), "terminated": torch.full((n,), terminated)}


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def test_polyak_target_update_exact_and_only_on_interval():
    sac = SAC(3, 2, SACConfig(**CFG, tau=0.1, target_update_interval=2))
    target0 = _params(sac.critic_target)
    assert all(torch.equal(t, s) for t, s in zip(target0, sac.critic.parameters()))  # starts as a copy
    sac.update(_batch())  # update 1 of interval 2: no target update
    assert all(torch.equal(t, b) for t, b in zip(sac.critic_target.parameters(), target0))
    sac.update(_batch(seed=1))  # update 2: target ← (1 − τ)·target + τ·online
    for t, b, s in zip(sac.critic_target.parameters(), target0, sac.critic.parameters()):
        assert torch.equal(t, torch.lerp(b, s.detach(), 0.1))
        torch.testing.assert_close(t, 0.9 * b + 0.1 * s.detach(), rtol=0, atol=1e-7)
        assert not torch.equal(t, b)
    target2 = _params(sac.critic_target)
    sac.update(_batch(seed=2))  # update 3: no target update again
    assert all(torch.equal(t, b) for t, b in zip(sac.critic_target.parameters(), target2))


def _pin_log_std(actor: Actor, log_std: float) -> None:
    """Make the actor's log std exactly `log_std` for every input (through the tanh rescaling)."""
    with torch.no_grad():
        actor.log_std.weight.zero_()
        x = (log_std - actor.log_std_min) / (0.5 * (actor.log_std_max - actor.log_std_min)) - 1
        actor.log_std.bias.fill_(math.atanh(x))


@pytest.mark.parametrize("log_std,should_rise", [(-4.5, True), (0.0, False)])
def test_entropy_tuning_sign(log_std, should_rise):
    """Target −0.5 nats/dim·2 dims = −1. std e^−4.5: entropy ≈ −7 < target → α rises.
    std 1: tanh(N(0, 1)) has entropy ≈ +0.7 nats per dimension > target → α falls."""
    sac = SAC(3, 2, SACConfig(**CFG, init_temperature=0.1, actor_lr=0.0))
    assert sac.target_entropy == -1.0
    _pin_log_std(sac.actor, log_std)
    a0 = sac.alpha.item()
    for i in range(5):
        logs = sac.update(_batch(seed=i))
    assert (logs["entropy"] < sac.target_entropy) == should_rise
    assert (sac.alpha.item() > a0) == should_rise


def test_target_entropy_default_scale_and_override():
    assert SAC(3, 4, SACConfig(**CFG)).target_entropy == -2.0
    assert SAC(3, 4, SACConfig(**CFG, target_entropy_scale=1.0)).target_entropy == -4.0
    assert SAC(3, 4, SACConfig(**CFG, target_entropy=-0.7)).target_entropy == -0.7


def test_truncation_bootstraps_termination_does_not():
    sac = SAC(3, 2, SACConfig(**CFG))
    b = _batch()
    b["terminated"] = (torch.arange(32) % 2).float()  # odd rows terminated, even rows truncated/continuing
    b["discount"] = torch.linspace(0.5, 0.99, 32)  # per-transition discount (γ^k of different chunk lengths)
    state = sac.gen.get_state()
    y = sac.critic_target_value(b)
    # recompute by hand with the networks, from the same generator state (same ã' ~ π(·|s'))
    sac.gen.set_state(state)
    with torch.no_grad():
        next_a, next_logp = sac.actor.sample(b["next_obs"], sac.gen)
        q = sac.critic_target(torch.cat([b["next_obs"], next_a], -1))  # (2, B): both heads
        v = torch.minimum(q[0], q[1]) - sac.alpha * next_logp
    bootstrapped = b["reward"] + b["discount"] * v
    term = b["terminated"].bool()
    torch.testing.assert_close(y[term], b["reward"][term])  # terminated: no bootstrap at all
    torch.testing.assert_close(y[~term], bootstrapped[~term])  # truncated: bootstraps with its own discount
    assert (y[~term] - b["reward"][~term]).abs().min() > 0


def test_redq_min_over_a_random_pair_of_heads():
    sac = SAC(3, 2, SACConfig(**CFG, num_critics=5, critic_pair=2, init_temperature=1e-3))
    with torch.no_grad():  # target head h predicts exactly h
        sac.critic_target.l3.weight.zero_()
        sac.critic_target.l3.bias.copy_(torch.arange(5.0).view(5, 1, 1))
    b = _batch()
    b["discount"] = torch.ones(32)
    mins = []
    for _ in range(400):
        state = sac.gen.get_state()
        heads = sac.draw_heads()
        assert heads.shape == (2,) and heads[0] != heads[1] and 0 <= heads.min() and heads.max() < 5
        sac.gen.set_state(state)
        with torch.no_grad():  # what the target must be for these heads: r + min(h1, h2) − α log π
            sac.draw_heads()
            _, next_logp = sac.actor.sample(b["next_obs"], sac.gen)
        expected = b["reward"] + float(heads.min()) - sac.alpha * next_logp
        sac.gen.set_state(state)
        torch.testing.assert_close(sac.critic_target_value(b), expected)
        mins.append(int(heads.min()))
    freq = np.bincount(mins, minlength=5) / len(mins)  # min of a random 2-subset of {0..4}: 4/10, 3/10, 2/10, 1/10, 0
    np.testing.assert_allclose(freq, [0.4, 0.3, 0.2, 0.1, 0.0], atol=0.07)
    assert freq[4] == 0
    # explicit heads: the min is over exactly those
    y = sac.critic_target_value(b, heads=torch.tensor([3, 4])) - b["reward"]
    assert torch.allclose(y, torch.full_like(y, 3.0), atol=1e-2)
    # critic_pair == num_critics: no draw, min over every head
    full = SAC(3, 2, SACConfig(**CFG, num_critics=3, critic_pair=3))
    assert full.draw_heads() is None


def test_tanh_gaussian_log_prob_normalised_and_matches_monte_carlo():
    mean, log_std = torch.tensor([0.3]), torch.tensor([math.log(0.8)])
    # analytic: the density integrates to 1 over (−1, 1) and matches torch's TanhTransform
    a = torch.linspace(-1, 1, 200_001, dtype=torch.float64)[1:-1]
    logp = tanh_gaussian_log_prob(torch.atanh(a).unsqueeze(-1), mean.double(), log_std.double())
    assert abs(torch.trapezoid(logp.exp(), a).item() - 1.0) < 1e-4
    ref = torch.distributions.TransformedDistribution(torch.distributions.Normal(mean.double(), log_std.double().exp()),
                                                      [torch.distributions.TanhTransform()])
    inner = a[50_000:150_000]  # |a| < 0.5 (TanhTransform's own log-det loses precision near ±1)
    torch.testing.assert_close(logp[50_000:150_000], ref.log_prob(inner.unsqueeze(-1)).squeeze(-1))
    # Monte Carlo: the actor's samples are distributed as exp(log_prob) says (histogram vs density)
    actor = Actor(1, 1, 8, -5, 2)
    with torch.no_grad():
        actor.mean.weight.zero_()
        actor.mean.bias.fill_(0.3)
    _pin_log_std(actor, math.log(0.8))
    with torch.no_grad():
        samples, sample_logp = actor.sample(torch.zeros(200_000, 1), torch.Generator().manual_seed(0))
    assert samples.abs().max() <= 1
    counts, edges = np.histogram(samples.squeeze(-1).numpy(), bins=20, range=(-1, 1))
    empirical = counts / (len(samples) * (edges[1] - edges[0]))
    centres = torch.tensor((edges[:-1] + edges[1:]) / 2, dtype=torch.float64).unsqueeze(-1)
    density = tanh_gaussian_log_prob(torch.atanh(centres), mean.double(), log_std.double()).exp().numpy()
    bin_mass = np.array([torch.trapezoid(logp[(a >= lo) & (a < hi)].exp(), a[(a >= lo) & (a < hi)]).item()
                         for lo, hi in zip(edges[:-1], edges[1:])]) / (edges[1] - edges[0])
    np.testing.assert_allclose(empirical, bin_mass, atol=0.03)  # MC vs integrated analytic density
    assert np.abs(empirical - density).max() < 0.15  # and vs the density at the bin centres
    # the log-prob returned with each sample is the density at that sample
    torch.testing.assert_close(sample_logp, tanh_gaussian_log_prob(torch.atanh(samples.double()), mean.double(),
                                                                   log_std.double()).float(), atol=2e-3, rtol=1e-3)


def test_learns_a_one_step_bandit():
    """reward = −‖a − a*(s)‖², terminated: Q is the reward, the actor must move to a*(s) = tanh(s₀)."""
    sac = SAC(2, 1, SACConfig(hidden=64, batch_size=64, actor_lr=3e-3, critic_lr=3e-3, init_temperature=0.01))
    rb = ReplayBuffer(5000, 2, 1, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(400):
        obs = rng.standard_normal((8, 2)).astype(np.float32)
        a = sac.act(obs)
        rb.add(obs, a, -((a - np.tanh(obs[:, :1])) ** 2).sum(1), obs, np.ones(8), np.ones(8))
        sac.update_many(rb)
    obs = rng.standard_normal((256, 2)).astype(np.float32)
    err = np.abs(sac.act(obs, deterministic=True) - np.tanh(obs[:, :1])).mean()
    assert err < 0.15, err


@pytest.mark.parametrize("cfg", [dict(CFG), dict(CFG, num_critics=4, critic_pair=2, actor_update_interval=2,
                                                  target_update_interval=3, grad_clip=1.0, critic_layer_norm=True)])
def test_save_load_then_identical_updates(tmp_path, cfg):
    a = SAC(3, 2, SACConfig(**cfg), seed=1)
    for i in range(5):
        a.update(_batch(seed=i))
    a.save(tmp_path / "sac")
    assert sorted(p.name for p in (tmp_path / "sac").iterdir()) == ["sac.json", "sac.safetensors"]
    json.loads((tmp_path / "sac" / "sac.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    b = SAC(3, 2, SACConfig(**cfg), seed=99)
    b.load(tmp_path / "sac")
    ta, ma = a.state_dict()
    tb, mb = b.state_dict()
    assert ta.keys() == tb.keys() and json.dumps(ma, sort_keys=True) == json.dumps(mb, sort_keys=True)
    assert any(k.startswith("critic_opt.state.") and k.endswith("exp_avg_sq") for k in ta)  # optimizer moments saved
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    for i in range(5, 10):
        la, lb = a.update(_batch(seed=i)), b.update(_batch(seed=i))
        assert la == lb or all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(la.values(), lb.values()))
    np.testing.assert_array_equal(a.act(np.ones((4, 3), np.float32)), b.act(np.ones((4, 3), np.float32)))
    ta, tb = a.state_dict()[0], b.state_dict()[0]
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


def test_load_rejects_mismatched_sizes(tmp_path):
    SAC(3, 2, SACConfig(**CFG)).save(tmp_path / "sac")
    with pytest.raises(ValueError, match="act_dim"):
        SAC(3, 4, SACConfig(**CFG)).load(tmp_path / "sac")
    with pytest.raises(ValueError, match="shape"):
        SAC(3, 2, SACConfig(hidden=16, batch_size=32)).load(tmp_path / "sac")
    with pytest.raises(ValueError, match="missing"):
        SAC(3, 2, SACConfig(**CFG)).load(tmp_path / "nothing_here")


def test_same_seed_same_actions_and_parameters_global_rng_untouched():
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        sac = SAC(3, 2, SACConfig(**CFG), seed=seed)
        assert torch.equal(torch.rand(3), expected)  # building a SAC leaves the global RNG alone
        rb = ReplayBuffer(100, 3, 2, seed=seed)
        b = _batch(n=64)
        rb.add(b["obs"], b["action"], b["reward"], b["next_obs"], b["discount"], b["terminated"])
        sac.update_many(rb, 3)
        runs.append((sac.act(np.ones((4, 3), np.float32)), sac.state_dict()[0]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    assert not np.array_equal(runs[0][0], runs[2][0])


def test_actions_in_bounds_and_deterministic_mode():
    sac = SAC(3, 2, SACConfig(**CFG))
    obs = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32) * 100
    a = sac.act(obs)
    assert a.shape == (64, 2) and a.dtype == np.float32 and np.abs(a).max() <= 1
    np.testing.assert_array_equal(sac.act(obs, deterministic=True), sac.act(obs, deterministic=True))
    assert not np.array_equal(sac.act(obs), sac.act(obs))


def test_critic_action_fn_sets_critic_input_and_carries_gradients():
    d = 2
    fn = lambda o, a: o[:, :d] + 0.3 * a  # noqa: E731  (ZPRL: the applied latent z + λΔz, z = obs[:, :d])
    sac = SAC(5, 2, SACConfig(**CFG), critic_action_fn=fn)
    assert sac.critic_action_dim == d and sac.critic.l1.weight.shape == (2, 5 + d, 32)
    b = _batch(obs_dim=5)
    torch.testing.assert_close(sac.critic_input(b["obs"], b["action"]),
                               torch.cat([b["obs"], b["obs"][:, :d] + 0.3 * b["action"]], -1))
    # the actor loss reaches the actor through the critic and fn
    a, logp = sac.actor.sample(b["obs"], sac.gen)
    sac.critic(sac.critic_input(b["obs"], a), frozen=True).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sac.actor.parameters() if p.ndim == 2)
    assert all(p.grad is None for p in sac.critic.parameters())  # frozen: no gradient into the critic
    sac.actor.zero_grad(set_to_none=True)
    before = _params(sac.actor)
    logs = sac.update(b)
    assert np.isfinite(list(logs.values())).all()
    assert all(not torch.equal(x, y) for x, y in zip(before, sac.actor.parameters()))
    # an output dimension different from act_dim is inferred, or can be given
    fn3 = lambda o, a: torch.cat([a, a.sum(-1, keepdim=True)], -1)  # noqa: E731
    assert SAC(5, 2, SACConfig(**CFG), critic_action_fn=fn3).critic.l1.weight.shape[1] == 5 + 3
    assert SAC(5, 2, SACConfig(**CFG), critic_action_fn=fn3, critic_action_dim=3).critic_action_dim == 3
    with pytest.raises(ValueError, match="critic_action_fn"):
        SAC(5, 2, SACConfig(**CFG), critic_action_fn=lambda o, a: a.sum(-1))


def test_actor_update_interval_and_update_many():
    sac = SAC(3, 2, SACConfig(**CFG, actor_update_interval=2, utd=3))
    rb = ReplayBuffer(100, 3, 2)
    b = _batch(n=64)
    rb.add(b["obs"], b["action"], b["reward"], b["next_obs"], b["discount"], b["terminated"])
    changed = []
    for _ in range(4):
        before = _params(sac.actor)
        sac.update(rb.sample(32))
        changed.append(any(not torch.equal(x, y) for x, y in zip(before, sac.actor.parameters())))
    assert changed == [True, False, True, False]
    logs = sac.update_many(rb)  # cfg.utd updates
    assert sac.updates == 7 and {"critic_loss", "actor_loss", "alpha", "entropy", "q_mean"} <= logs.keys()


def test_bad_inputs():
    sac = SAC(3, 2, SACConfig(**CFG))
    with pytest.raises(ValueError, match="shape"):
        sac.act(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="shape"):
        sac.act(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        sac.act(np.full((1, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="NaN"):  # a tensor (the loop's features) is checked the same way
        sac.act(torch.tensor([[0.0, float("inf"), 0.0]]))
    with pytest.raises(ValueError, match="shape"):
        sac.act(torch.zeros(2, 4))
    b = _batch()
    b["reward"] = b["reward"].unsqueeze(-1)  # (B, 1) would broadcast the target to (B, B)
    with pytest.raises(ValueError, match="reward"):
        sac.update(b)
    with pytest.raises(ValueError, match="lacks"):
        sac.update({k: v for k, v in _batch().items() if k != "discount"})
    for bad in (dict(num_critics=2, critic_pair=3), dict(tau=0.0), dict(init_temperature=0.0),
                dict(actor_q="max"), dict(grad_clip=-1.0), dict(utd=0)):
        with pytest.raises(ValueError):
            SACConfig(**bad)


def test_acting_on_a_tensor_or_an_array_is_the_same_draw():
    """act() takes the loop's feature tensor as is; the action and the generator stream are those of a numpy
    input, and of the actor's own reparameterized sample (acting skips only the log-probability)."""
    obs = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    a, b = SAC(3, 2, SACConfig(**CFG), seed=4), SAC(3, 2, SACConfig(**CFG), seed=4)
    for _ in range(3):
        np.testing.assert_array_equal(a.act(obs), b.act(torch.from_numpy(obs)))
    gen = torch.Generator().manual_seed(7)
    state = gen.get_state()
    sampled = a.actor.sample(torch.from_numpy(obs), gen)[0]
    gen.set_state(state)
    assert torch.equal(a.actor.sample_action(torch.from_numpy(obs), gen), sampled)


def test_critic_width_depth_and_layer_norm_options():
    from steerlab.train.finetune import PRESETS

    default = SAC(6, 2, SACConfig(hidden=16), seed=3)
    assert sorted(default.critic.state_dict()) == ["l1.bias", "l1.weight", "l2.bias", "l2.weight", "l3.bias", "l3.weight"]
    deep = SAC(6, 2, SACConfig(hidden=16, critic_hidden=24, critic_layers=3, critic_layer_norm=True), seed=3)
    shapes = {k: tuple(v.shape) for k, v in deep.critic.state_dict().items() if k.endswith("weight")}
    assert shapes == {"l1.weight": (2, 8, 24), "l2.weight": (2, 24, 24), "l3.weight": (2, 24, 24), "l4.weight": (2, 24, 1)}
    assert deep.actor.mean.in_features == 16  # the actor keeps `hidden`
    # the forward pass is the stated network: three LayerNorm-ReLU layers, then the output layer
    x = torch.randn(5, 8)
    h = x.unsqueeze(0).expand(2, -1, -1)
    for i in (1, 2, 3):
        layer = getattr(deep.critic, f"l{i}")
        h = torch.relu(torch.nn.functional.layer_norm(torch.baddbmm(layer.bias, h, layer.weight), (24,)))
    torch.testing.assert_close(deep.critic(x), torch.baddbmm(deep.critic.l4.bias, h, deep.critic.l4.weight).squeeze(-1))
    with pytest.raises(ValueError, match="critic_layers"):
        SACConfig(critic_layers=0)
    preset = SACConfig(**PRESETS["dsrl-paper"])
    assert (preset.critic_hidden, preset.critic_layers, preset.critic_layer_norm, preset.utd) == (2048, 3, True, 20)
