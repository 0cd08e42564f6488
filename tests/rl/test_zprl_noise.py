"""zprl-noise: one SAC action [Δz, w] steering the VIB latent and the sampler's initial noise, started at the base."""

import json
import math

import numpy as np
import pytest
import torch

from steerlab.cli import main
from steerlab.core.checkpoint import load_policy
from steerlab.rl.sac import SAC, SACConfig
from steerlab.rl.steering import METHODS, REGISTRY, make_adapter
from steerlab.rl.steering.zprl_noise import ZPRLNoise
from steerlab.train.finetune import Finetuner
from tests.rl.test_steering import _cfg


def _adapter(base_ckpt, **kw):
    meta = json.loads((base_ckpt / "config.json").read_text())
    return make_adapter(load_policy(base_ckpt), "zprl-noise", kw, meta["latent_stats"])


def test_registered_with_its_sizes(base_ckpt):
    assert "zprl-noise" in METHODS and REGISTRY["zprl-noise"] is ZPRLNoise
    ad = _adapter(base_ckpt, latent_scale=0.25, noise_magnitude=2.0)
    assert ad.act_dim == ad.latent_dim + 32 and ad.obs_dim == ad.embed_dim + ad.latent_dim and not ad.keeps_sampler
    obs = torch.randn(3, 39)
    feats = ad.features(obs, train=False)
    a = torch.rand(3, ad.act_dim) * 2 - 1
    # the critic values the applied latent and the chosen noise
    z = feats[:, ad.embed_dim:]
    torch.testing.assert_close(ad.critic_action(feats, a), torch.cat([z + 0.25 * a[:, :ad.latent_dim],
                                                                      a[:, ad.latent_dim:]], -1))
    # the chunk: the generator on dec(z + λΔz), integrated from ε = magnitude·w (the sampler's noise is ignored)
    expected = ad.policy.chunk_from_embedding(ad.vib.decode(z + 0.25 * a[:, :ad.latent_dim]),
                                              2.0 * a[:, ad.latent_dim:].reshape(3, 8, 4))
    torch.testing.assert_close(ad.chunk(obs, feats, a, torch.randn(3, 8, 4)), expected)


def test_starts_at_the_base_eps0_chunk(base_ckpt):
    ad = _adapter(base_ckpt)
    cfg = ad.resolve_sac(SACConfig(hidden=32))
    assert cfg.actor_init_zero_mean and cfg.actor_init_std == 0.2 and cfg.actor_tether == 1.0
    assert cfg.target_entropy == -0.5 * ad.latent_dim and ad.critic_warmup == 1_000
    sac = ad.make_learner(cfg, seed=0)
    obs = torch.randn(4, 39)
    feats = ad.features(obs, train=False)
    mean, log_std = sac.actor(feats)
    assert torch.equal(mean, torch.zeros_like(mean))
    torch.testing.assert_close(log_std.exp()[:, :ad.latent_dim], torch.full((4, ad.latent_dim), 0.2))
    torch.testing.assert_close(log_std.exp()[:, ad.latent_dim:], torch.full((4, 32), 0.8))
    first = ad.chunk(obs, feats, torch.as_tensor(sac.act(feats, deterministic=True)), None)
    base_eps0 = ad.policy.chunk_from_embedding(ad.vib.decode(feats[:, ad.embed_dim:]), torch.zeros(4, 8, 4))
    assert torch.equal(first, base_eps0)
    # the warm-up action runs the base with its own noise: Δz = 0, w = ε / magnitude
    noise = 0.5 * torch.randn(2, 8, 4)
    warm = torch.as_tensor(ad.warmup_action(2, noise))
    assert torch.equal(warm[:, :ad.latent_dim], torch.zeros(2, ad.latent_dim))
    torch.testing.assert_close(ad.chunk(obs[:2], feats[:2], warm, None),
                               ad.policy.chunk_from_embedding(ad.vib.decode(feats[:2, ad.embed_dim:]), noise))


def test_tether_pulls_the_noise_dimensions_only():
    batch = {"obs": torch.randn(16, 5), "action": torch.rand(16, 6) * 2 - 1, "reward": torch.randn(16),
             "next_obs": torch.randn(16, 5), "discount": torch.full((16,), 0.99), "terminated": torch.zeros(16)}

    def actor_after_update(tether, dims):
        sac = SAC(5, 6, SACConfig(hidden=16, batch_size=16, actor_tether=tether, actor_init_zero_mean=True), seed=1)
        with torch.no_grad():
            sac.actor.mean.bias[:2] = 0.7  # the latent part has moved; the noise part sits at ε = 0
        sac.tether_dims = dims
        sac.update(batch)
        return torch.cat([p.detach().flatten() for p in sac.actor.parameters()])

    untethered = actor_after_update(0.0, None)
    assert torch.equal(actor_after_update(1.0, torch.arange(2, 6)), untethered)  # noise dims at 0: no pull
    assert not torch.equal(actor_after_update(1.0, None), untethered)  # all dims: the latent is pulled


def test_finetune_save_load_and_resume_exactly(base_ckpt, tmp_path):
    full = Finetuner(_cfg(base_ckpt, tmp_path / "full", "zprl-noise", steps=120, steering={"critic_warmup": 5}),
                     progress=False)
    out = full.run()
    assert full.sac.updates > 0 and full.sampler_mode["chosen"] == 1.0 and full.sac.tether_dims is not None
    steered = load_policy(out / "policy")
    assert steered.adapter.name == "zprl-noise" and steered.sampler_noise_scale == 1.0
    obs = np.random.default_rng(1).standard_normal((3, 39)).astype(np.float32)
    np.testing.assert_array_equal(steered.predict_chunk(obs), full.steered_policy().predict_chunk(obs))
    part = Finetuner(_cfg(base_ckpt, tmp_path / "part", "zprl-noise", steps=120, steering={"critic_warmup": 5}),
                     progress=False)
    part.cfg.env_steps = 60
    part.run()
    resumed = Finetuner(_cfg(base_ckpt, tmp_path / "part", "zprl-noise", steps=120, steering={"critic_warmup": 5}),
                        progress=False)
    resumed.run()
    full_t, full_meta = full.sac.state_dict()
    res_t, res_meta = resumed.sac.state_dict()
    assert full_t.keys() == res_t.keys() and full_meta["updates"] == res_meta["updates"]
    for k, v in full_t.items():
        assert torch.equal(v, res_t[k]), k


def test_cli_tiny_run(base_ckpt, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["finetune", str(base_ckpt), "--method", "zprl-noise", "--env", "reach-v3", "--max-steps", "20",
            "--env-steps", "40", "--warmup", "5", "--eval-every", "40", "--eval-episodes", "1", "--final-episodes", "1",
            "--out", str(out), "--sac-json", '{"hidden": 16, "batch_size": 8}', "--no-tensorboard",
            "--steering-json", '{"noise_magnitude": 1.0}']
    assert main(argv) == 0, capsys.readouterr().err
    res = json.loads((out / "result.json").read_text())
    assert res["method"] == "zprl-noise" and res["sampler_mode"]["episodes"] == 0  # it chooses ε: nothing measured
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["steering"]["noise_magnitude"] == 1.0 and cfg["finetune"]["sac"]["actor_tether"] == 1.0
    assert math.isfinite(res["auc"])


@pytest.mark.parametrize("bad", [{"noise_magnitude": 0}, {"noise_init_std": -1}])
def test_bad_options_are_one_line(base_ckpt, bad):
    from steerlab.core.errors import UserError

    with pytest.raises(UserError, match="noise_magnitude and noise_init_std"):
        _adapter(base_ckpt, **bad)
