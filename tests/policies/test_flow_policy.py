import numpy as np
import pytest
import torch
from conftest import TINY_POLICY

from steerlab.policies.flow_matching import FlowMatchingPolicy, FlowPolicyConfig
from steerlab.policies.flow_matching.sampler import euler_sample
from steerlab.policies.vib import VIB, gaussian_kl


@pytest.mark.parametrize("steps", [1, 5, 17])
def test_euler_exact_on_constant_field(steps):
    noise = torch.randn(3, 8, 4)
    c = torch.randn(8, 4)
    out = euler_sample(lambda x, t: c.expand_as(x), noise, steps)
    torch.testing.assert_close(out, noise - c)


def test_euler_follows_linear_path():
    # for the straight path between a and ε the exact velocity is ε − a, so any step count lands on a
    a, eps = torch.randn(2, 8, 4), torch.randn(2, 8, 4)
    out = euler_sample(lambda x, t: eps - a, eps, 3)
    torch.testing.assert_close(out, a)


def test_euler_rejects_zero_steps():
    with pytest.raises(ValueError, match="steps"):
        euler_sample(lambda x, t: x, torch.zeros(1, 2, 2), 0)


def test_flow_loss_decreases_on_toy_set():
    torch.manual_seed(0)
    cfg = FlowPolicyConfig(obs_dim=6, action_dim=2, use_vib=False, **{k: v for k, v in TINY_POLICY.items()
                                                                      if not k.startswith(("vib", "latent"))})
    policy = FlowMatchingPolicy(cfg)
    obs = torch.randn(256, 6)
    chunk = torch.tanh(obs[:, :2])[:, None, :].repeat(1, cfg.horizon, 1)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        loss, _ = policy.compute_loss(obs, chunk, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])


def test_kl_matches_closed_form():
    mu, logvar = torch.randn(5, 8), torch.randn(5, 8)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected)
    assert torch.all(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)) == 0)


def test_deterministic_vib_is_an_autoencoder():
    vib = VIB(16, 4, stochastic=False)
    mu, logvar = vib.posterior(torch.randn(3, 16))
    assert torch.equal(vib.sample(mu, logvar), mu)


def test_vib_branch_never_touches_imitation_parameters():
    torch.manual_seed(0)
    policy = FlowMatchingPolicy(FlowPolicyConfig(**TINY_POLICY))
    obs, chunk = torch.randn(32, 39), torch.randn(32, 8, 4)
    e = policy.embed(obs)
    loss, _ = policy.vib_loss(e, policy.action_norm.normalize(chunk))
    loss.backward()
    assert all(p.grad is None for p in policy.imitation_parameters())
    assert all(p.grad is not None for p in policy.vib_parameters())


def test_predict_chunk_shapes_bounds_and_steering_hooks():
    # concat conditioning: an untrained FiLM head is zero-initialised and would ignore the condition
    policy = FlowMatchingPolicy(FlowPolicyConfig(**TINY_POLICY, conditioning="concat")).eval()
    obs = np.random.default_rng(0).standard_normal((3, 39)).astype(np.float32)
    noise = torch.randn(3, 8, 4)
    a = policy.predict_chunk(obs, noise=noise)
    assert a.shape == (3, 8, 4) and np.all(np.abs(a) <= 1.0)
    np.testing.assert_array_equal(a, policy.predict_chunk(obs, noise=noise))  # noise fixes the sample
    shifted = policy.predict_chunk(obs, noise=noise, latent_residual=torch.full((3, 4), 0.5))
    assert not np.allclose(a, shifted)
    assert policy.predict_chunk(obs[0]).shape == (1, 8, 4)


def test_select_action_replans_every_n_action_steps():
    policy = FlowMatchingPolicy(FlowPolicyConfig(**TINY_POLICY, n_action_steps=3)).eval()
    obs = np.zeros(39, np.float32)
    g = torch.Generator().manual_seed(0)
    chunk = policy.predict_chunk(obs, generator=torch.Generator().manual_seed(0))[0]
    got = [policy.select_action(obs, generator=g) for _ in range(3)]
    np.testing.assert_array_equal(np.stack(got), chunk[:3])


@pytest.mark.parametrize("bad,match", [(np.zeros(38), "shape"), (np.full(39, np.nan), "NaN"),
                                       (np.zeros((2, 3, 39)), "shape")])
def test_bad_observations_raise_clear_errors(bad, match):
    policy = FlowMatchingPolicy(FlowPolicyConfig(**TINY_POLICY))
    with pytest.raises(ValueError, match=match):
        policy.predict_chunk(bad)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="conditioning"):
        FlowPolicyConfig(conditioning="cross-attention")
    with pytest.raises(ValueError, match="n_action_steps"):
        FlowPolicyConfig(horizon=4, n_action_steps=5)
    with pytest.raises(ValueError, match="unknown FlowPolicyConfig"):
        FlowPolicyConfig.from_dict({"horizn": 3})


@pytest.mark.parametrize("conditioning", ["film", "concat"])
def test_both_conditionings_run(conditioning):
    policy = FlowMatchingPolicy(FlowPolicyConfig(**TINY_POLICY, conditioning=conditioning))
    loss, logs = policy.compute_loss(torch.randn(4, 39), torch.randn(4, 8, 4))
    loss.backward()
    assert {"flow", "vib_flow", "kl", "recon"} <= set(logs)


def test_sampling_reuses_time_embeddings_bit_for_bit():
    # generate() caches the Euler steps' time embeddings per batch size; the chunk must be exactly what the
    # velocity net gives when it embeds t itself at every step (euler_times are the times euler_sample visits)
    from steerlab.policies.flow_matching.sampler import euler_times

    cfg = FlowPolicyConfig(obs_dim=6, action_dim=2, use_vib=False, **{k: v for k, v in TINY_POLICY.items()
                                                                      if not k.startswith(("vib", "latent"))})
    policy = FlowMatchingPolicy(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for batch in (1, 3, 1, 8, 3):  # sizes recur: the cache is hit
            cond = torch.randn(batch, cfg.embed_dim, generator=gen)
            noise = torch.randn(batch, cfg.horizon, cfg.action_dim, generator=gen)
            plain = euler_sample(lambda x, t, c=cond: policy.velocity(x, t, c), noise, cfg.num_inference_steps)
            assert torch.equal(policy.generate(cond, noise), plain)
    times = euler_times(2, 4, torch.float32, "cpu")
    assert [float(t[0]) for t in times] == pytest.approx([1.0, 0.75, 0.5, 0.25]) and times[0].shape == (2,)
    with pytest.raises(ValueError, match="steps"):
        euler_times(1, 0, torch.float32, "cpu")
