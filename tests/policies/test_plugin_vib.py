"""The plug-in VIB: fitted post hoc on any embedding-steerable policy, the policy untouched."""


import numpy as np
import pytest
import torch
from torch import nn

from steerlab.cli import main
from steerlab.core.checkpoint import load_policy
from steerlab.core.errors import UserError
from steerlab.policies.factory import load_policy_source
from steerlab.policies.plugin_vib import PluginVIBConfig, fit_plugin_vib, save_plugin_vib_policy
from steerlab.policies.protocol import check_steerable, supports
from steerlab.rl.steering import make_adapter

POLICY_MODULE = '''
import torch
from torch import nn


class Foreign(nn.Module):
    obs_dim, action_dim, horizon, n_action_steps, embed_dim, noise_shape = 5, 3, 4, 2, 8, (4, 3)

    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(5, 8)
        self.gen = nn.Linear(8 + 12, 12)

    def embed(self, obs):
        return torch.tanh(self.enc(obs))

    def chunk_from_embedding(self, e, noise=None):
        noise = torch.zeros(e.shape[0], 4, 3) if noise is None else noise
        return torch.tanh(self.gen(torch.cat([e, noise.flatten(1)], -1))).reshape(-1, 4, 3)

    def sample_chunk(self, obs, noise=None):
        return self.chunk_from_embedding(self.embed(obs), noise)


def make():
    torch.manual_seed(3)
    return Foreign()
'''
SMALL = PluginVIBConfig(latent_dim=3, vib_hidden=16, vib_depth=1, steps=40, batch_size=32)


@pytest.fixture
def foreign(policy_module):
    return policy_module("foreign_policy", POLICY_MODULE)


def test_fit_leaves_the_policy_bitwise_unchanged_and_reloads(foreign, tmp_path):
    policy, meta, tensors = load_policy_source(foreign)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    obs = np.random.default_rng(0).standard_normal((100, 5)).astype(np.float32)
    wrapped = fit_plugin_vib(policy, obs, SMALL, base_meta=meta, base_tensors=tensors, progress=False)
    for k, v in policy.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in policy.parameters())  # gradients went to the VIB only
    assert supports(wrapped, "latent") and not supports(policy, "latent")
    assert wrapped.latent_stats["mu_rms"] > 0 and wrapped.latent_stats["e_rms"] > 0
    # the same seed fits the same VIB
    again = fit_plugin_vib(load_policy_source(foreign)[0], obs, SMALL, progress=False)
    for k, v in wrapped.vib.state_dict().items():
        assert torch.equal(v, again.vib.state_dict()[k]), k

    save_plugin_vib_policy(wrapped, tmp_path / "vib")
    loaded = load_policy(tmp_path / "vib")
    x, noise = torch.as_tensor(obs[:4]), torch.randn(4, 4, 3)
    ad_a = make_adapter(wrapped, "zprl", {"latent_scale": 0.5})
    ad_b = make_adapter(loaded, "zprl", {}, loaded.latent_stats)  # λ from the recorded statistics
    assert ad_b.scale == pytest.approx(0.3 * wrapped.latent_stats["mu_rms"])
    fa, fb = ad_a.features(x, train=False), ad_b.features(x, train=False)
    torch.testing.assert_close(fa, fb, rtol=0, atol=0)
    a = torch.ones(4, 3) * 0.3
    torch.testing.assert_close(ad_a.chunk(x, fa, a, noise),
                               ad_b.chunk(x, fb, a * 0.5 / ad_b.scale, noise))


def test_vib_learns_to_act_like_the_embedding(foreign):
    """More fitting steps bring chunk_from_embedding(dec(μ)) closer to the policy's own chunks."""
    policy = load_policy_source(foreign)[0]
    obs = torch.as_tensor(np.random.default_rng(1).standard_normal((200, 5)).astype(np.float32))
    noise = torch.randn(200, 4, 3, generator=torch.Generator().manual_seed(0))

    def action_error(steps):
        w = fit_plugin_vib(policy, obs.numpy(), PluginVIBConfig(latent_dim=3, vib_hidden=32, vib_depth=1,
                                                                steps=steps, lr=3e-3), progress=False)
        with torch.no_grad():
            e = policy.embed(obs)
            e_hat = w.vib.decode(w.vib.posterior(e)[0])
            return float((policy.chunk_from_embedding(e_hat, noise) - policy.chunk_from_embedding(e, noise))
                         .pow(2).mean())

    assert action_error(300) < 0.5 * action_error(1)


def test_missing_protocol_piece_is_one_line():
    class ActOnly(nn.Module):
        obs_dim, action_dim, horizon, n_action_steps = 2, 1, 1, 1

        def sample_chunk(self, obs, noise=None):
            return torch.zeros(obs.shape[0], 1, 1)

    with pytest.raises(UserError, match="cannot be steered by steering method 'zprl': it lacks `noise_shape"):
        fit_plugin_vib(ActOnly(), np.zeros((3, 2), np.float32), SMALL, progress=False)
    with pytest.raises(UserError, match="'dsrl': it lacks `noise_shape"):
        make_adapter(ActOnly(), "dsrl")
    check_steerable(ActOnly(), "action")
    assert make_adapter(ActOnly(), "action-residual").act_dim == 1


def test_cli_vib_only_from_a_factory(foreign, tmp_path, capsys):
    from conftest import make_episodes

    from steerlab.data.dataset import write_dataset

    ds = write_dataset(tmp_path / "ds", make_episodes(obs_dim=5, act_dim=3), "steerlab/PointReach-v0")
    out = tmp_path / "foreign_vib"
    assert main(["pretrain", "--vib-only", "--from", foreign, "--dataset", str(ds), "--out", str(out),
                 "--steps", "5", "--latent-dim", "3", "--policy-json", '{"vib_hidden": 16, "vib_depth": 1}']) == 0
    loaded = load_policy(out)
    assert loaded.vib.latent_dim == 3 and type(loaded.policy).__name__ == "Foreign"
    assert main(["pretrain", "--vib-only", "--from", foreign, "--dataset", str(ds), "--out", str(tmp_path / "x"),
                 "--horizon", "3"]) == 2
    assert "unknown plug-in VIB option(s) ['horizon']" in capsys.readouterr().err
