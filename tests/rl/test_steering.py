"""Steering adapters and the online-RL loop on a tiny base policy (seconds)."""

import json

import numpy as np
import pytest
import torch

from steerlab.core.checkpoint import load_policy
from steerlab.core.errors import UserError
from steerlab.rl.sac import SACConfig
from steerlab.rl.steering import METHODS, make_adapter
from steerlab.train.finetune import FinetuneConfig, Finetuner, finetune

TINY_SAC = {"hidden": 32, "batch_size": 16}


def _adapter(base_ckpt, method, **kw):
    meta = json.loads((base_ckpt / "config.json").read_text())
    return make_adapter(load_policy(base_ckpt), method, kw, meta["latent_stats"])


@pytest.mark.parametrize("method", METHODS)
def test_adapter_shapes_and_bounds(base_ckpt, method):
    ad = _adapter(base_ckpt, method)
    obs = torch.randn(5, 39)
    noise = torch.randn(5, 8, 4)
    feats = ad.features(obs, train=True, gen=torch.Generator().manual_seed(0), noise=noise)
    assert feats.shape == (5, ad.obs_dim)
    for a in (torch.ones(5, ad.act_dim), -torch.ones(5, ad.act_dim), torch.zeros(5, ad.act_dim)):
        chunk = ad.chunk(obs, feats, a, noise)
        # generated actions are clamped to [-1, 1]; a residual may exceed them by its scale (the env clips)
        assert chunk.shape == (5, 8, 4) and chunk.abs().max() <= 1.0 + (ad.scale if method == "action-residual" else 0)
    assert ad.critic_action(feats, torch.zeros(5, ad.act_dim)).shape[0] == 5


def test_zprl_residual_is_bounded_by_lambda(base_ckpt):
    ad = _adapter(base_ckpt, "zprl", latent_scale=0.25)
    feats = ad.features(torch.randn(4, 39), train=False)
    z = feats[:, ad.embed_dim:]
    applied = ad.applied_latent(feats, torch.ones(4, ad.act_dim))
    torch.testing.assert_close(applied - z, torch.full_like(z, 0.25))
    meta = json.loads((base_ckpt / "config.json").read_text())
    default = _adapter(base_ckpt, "zprl")
    assert default.scale == pytest.approx(0.3 * meta["latent_stats"]["mu_rms"])


def test_action_residual_bounded_by_scale(base_ckpt):
    ad = _adapter(base_ckpt, "action-residual", residual_scale=0.05)
    obs, noise = torch.randn(3, 39), torch.randn(3, 8, 4)
    feats = ad.features(obs, train=False, noise=noise)
    zero = ad.chunk(obs, feats, torch.zeros(3, ad.act_dim), noise)[:, :2]
    full = ad.chunk(obs, feats, torch.ones(3, ad.act_dim), noise)[:, :2]
    assert (full - zero).abs().max() <= 0.05 + 1e-6


def test_zero_residual_reproduces_the_base_policy(base_ckpt):
    base = load_policy(base_ckpt)
    obs, noise = torch.randn(3, 39), torch.randn(3, 8, 4)
    expected = torch.as_tensor(base.predict_chunk(obs, noise=noise))
    for method in ("zprl", "action-residual"):
        ad = _adapter(base_ckpt, method)
        feats = ad.features(obs, train=False, noise=noise)
        got = ad.chunk(obs, feats, torch.zeros(3, ad.act_dim), noise)[:, : base.config.n_action_steps]
        torch.testing.assert_close(got, expected[:, : base.config.n_action_steps])
    ad = _adapter(base_ckpt, "dsrl")
    warm = torch.as_tensor(ad.warmup_action(3, noise * 0.5))  # inside the magnitude: exact
    torch.testing.assert_close(ad.chunk(obs, ad.features(obs, False), warm, noise), expected.new_tensor(
        base.predict_chunk(obs, noise=noise * 0.5)))


def test_unknown_method_and_missing_vib(base_ckpt, tmp_path):
    with pytest.raises(UserError, match="unknown steering method 'ppo-residual'"):
        make_adapter(load_policy(base_ckpt), "ppo-residual")
    with pytest.raises(UserError, match=r"unknown option\(s\) \['latent_scale'\]"):
        make_adapter(load_policy(base_ckpt), "dsrl", {"latent_scale": 0.1})
    base = load_policy(base_ckpt)
    base.vib = None
    with pytest.raises(UserError, match="cannot be steered by steering method 'zprl'.*vib"):
        make_adapter(base, "zprl", {}, {"mu_rms": 1.0})


def _cfg(base_ckpt, tmp_path, method, steps=80, **kw):
    return FinetuneConfig(base=str(base_ckpt), method=method, env="reach-v3", env_steps=steps, seed=0,
                          out=str(tmp_path / method), max_steps=20, warmup_decisions=10, eval_every=40,
                          eval_episodes=2, checkpoint_every=40, buffer_size=1000, tensorboard=False,
                          sac=SACConfig(**TINY_SAC), **{"final_episodes": 0, "sampler_noise_scale": 1.0,
                                                         "release_gate_episodes": 0, **kw})  # the gate: test_release_gate.py


@pytest.mark.parametrize("method", METHODS)
def test_short_run_end_to_end_keeps_base_frozen(base_ckpt, tmp_path, method):
    before = {k: v.clone() for k, v in load_policy(base_ckpt).state_dict().items()}
    tuner = Finetuner(_cfg(base_ckpt, tmp_path, method), progress=False)
    out = tuner.run()
    for k, v in tuner.base.state_dict().items():
        assert torch.equal(v, before[k]), f"base parameter {k} changed"
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 0 and rows[-1]["step"] >= 80 and "eval_success" in rows[-1]
    steered = load_policy(out / "policy")  # the final steered policy is a normal checkpoint
    # ... that acts exactly as the trained policy in memory: same observation + noise -> same actions
    trained = tuner.steered_policy()
    obs = np.random.default_rng(1).standard_normal((3, 39)).astype(np.float32)
    noise = torch.randn(3, 8, 4)
    np.testing.assert_array_equal(steered.predict_chunk(obs, noise=noise), trained.predict_chunk(obs, noise=noise))
    assert steered.env_spec["id"] == "reach-v3" and steered.env_spec["family"] == "metaworld"
    assert steered.env_spec["max_steps"] == 20 and steered.env_spec["position_key"] == "hand_pos"


def test_resume_continues_exactly(base_ckpt, tmp_path):
    full = Finetuner(_cfg(base_ckpt, tmp_path / "full", "zprl", steps=120), progress=False)
    full.run()
    # interrupted run: stop after the first training-state checkpoint (40+ steps, at an episode end)
    part = Finetuner(_cfg(base_ckpt, tmp_path / "part", "zprl", steps=120), progress=False)
    part.cfg.env_steps = 60
    part.run()
    saved_steps = part.env_steps
    resumed = Finetuner(_cfg(base_ckpt, tmp_path / "part", "zprl", steps=120), progress=False)
    assert resumed.load_state() and resumed.env_steps == saved_steps
    np.testing.assert_array_equal(resumed.replay.obs[: len(resumed.replay)], part.replay.obs[: len(part.replay)])
    resumed.run()
    assert resumed.env_steps == full.env_steps
    full_t, full_meta = full.sac.state_dict()
    res_t, res_meta = resumed.sac.state_dict()
    assert full_t.keys() == res_t.keys() and full_meta["updates"] == res_meta["updates"]
    for k, v in full_t.items():
        assert torch.equal(v, res_t[k]), k
    np.testing.assert_array_equal(full.replay.obs, resumed.replay.obs)


def test_same_seed_same_run(base_ckpt, tmp_path):
    a = finetune(_cfg(base_ckpt, tmp_path / "a", "dsrl", steps=60), progress=False)
    b = finetune(_cfg(base_ckpt, tmp_path / "b", "dsrl", steps=60), progress=False)
    ma = [{k: v for k, v in json.loads(x).items() if k != "steps_per_s"} for x in (a / "metrics.jsonl").read_text().splitlines()]
    mb = [{k: v for k, v in json.loads(x).items() if k != "steps_per_s"} for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert ma == mb


def test_steered_policy_is_a_full_policy_and_reads_the_v1_format(base_ckpt, tmp_path):
    out = finetune(_cfg(base_ckpt, tmp_path / "r", "zprl", steps=40), progress=False) / "policy"
    steered = load_policy(out)
    obs = np.random.default_rng(0).standard_normal(39).astype(np.float32)
    first = steered.select_action(obs)
    assert first.shape == (4,) and len(steered._queue) == steered.n_action_steps - 1
    steered.reset()
    assert steered._queue == []
    noise = torch.randn(2, *steered.noise_shape)
    expected = steered.predict_chunk(np.stack([obs, obs]), noise=noise)
    # v1 steered checkpoints: one shared SteeringConfig (every method's keys), no module, env as suite/task
    cfg = json.loads((out / "config.json").read_text())
    scale = cfg["config"]["steering"]["resolved_scale"]
    cfg["config"]["steering"] = {"method": "zprl", "latent_scale": None, "latent_rms_ratio": 0.3, "latent_sample": True,
                                 "residual_scale": 0.05, "progressive_steps": 20000, "noise_magnitude": 1.5,
                                 "embedding_scale": None, "resolved_scale": scale}
    cfg["config"]["env"] = {"suite": "metaworld", "task": "reach-v3", "max_steps": 20}
    (out / "config.json").write_text(json.dumps(cfg))
    old = load_policy(out)
    assert old.adapter.scale == scale
    np.testing.assert_array_equal(old.predict_chunk(np.stack([obs, obs]), noise=noise), expected)
