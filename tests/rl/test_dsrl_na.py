"""dsrl-na (noise aliasing): shapes, the distillation target, and the finetune loop on a tiny base (seconds)."""

import json

import numpy as np
import pytest
import torch

from steerlab.core.checkpoint import load_policy
from steerlab.core.errors import UserError
from steerlab.rl.sac import SAC, SACConfig
from steerlab.rl.steering import make_adapter
from steerlab.rl.steering.dsrl_na import NoiseAliasSAC
from steerlab.train.finetune import FinetuneConfig, Finetuner

TINY_SAC = {"hidden": 32, "batch_size": 16}


def _adapter(base_ckpt, **kw):
    return make_adapter(load_policy(base_ckpt), "dsrl-na", kw)


def _batch(n=16, obs_dim=39, act_dim=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(n, obs_dim, generator=g), "next_obs": torch.randn(n, obs_dim, generator=g),
            "action": torch.rand(n, act_dim, generator=g) * 2 - 1, "reward": torch.rand(n, generator=g),
            "discount": torch.full((n,), 0.9), "terminated": torch.zeros(n)}


def test_shapes(base_ckpt):
    ad = _adapter(base_ckpt)
    pol = ad.policy
    assert ad.obs_dim == pol.obs_dim and ad.act_dim == int(np.prod(pol.noise_shape))
    assert ad.exec_dim == pol.n_action_steps * pol.action_dim
    obs = torch.randn(5, pol.obs_dim)
    assert torch.equal(ad.features(obs, train=True), obs)
    assert ad.executed(obs, torch.zeros(5, ad.act_dim)).shape == (5, ad.exec_dim)
    learner = ad.make_learner(SACConfig(**TINY_SAC), seed=0)
    assert isinstance(learner, NoiseAliasSAC) and isinstance(learner, SAC)
    assert learner.critic(learner.critic_input(obs, torch.zeros(5, ad.act_dim))).shape == (2, 5)  # Q^W
    assert learner.q_action(obs, torch.zeros(5, ad.exec_dim)).shape == (2, 5)  # Q^A
    assert learner.act(obs.numpy()).shape == (5, ad.act_dim)
    with pytest.raises(UserError):
        _adapter(base_ckpt, distill_base=0, distill_actor=0)
    with pytest.raises(UserError):
        _adapter(base_ckpt, noise_magnitude=0.0)


def test_distillation_target_is_q_action_of_the_decoded_chunk(base_ckpt):
    ad = _adapter(base_ckpt)
    learner = ad.make_learner(SACConfig(**TINY_SAC), seed=0)
    pol = ad.policy
    obs = torch.randn(7, pol.obs_dim)
    w = torch.rand(7, ad.act_dim) * 2 - 1
    # decode by hand: the generator from ε = magnitude·w, its first n_action_steps actions flattened
    chunk = pol.sample_chunk(obs, ad.scale * w.reshape(-1, *pol.noise_shape))
    executed = chunk[:, : pol.n_action_steps].reshape(7, -1)
    expected = learner.critic_a(torch.cat([obs, executed], -1)).mean(0)
    torch.testing.assert_close(learner.distill_target(obs, w), expected)
    # ... and it depends on the noise only through the executed actions: the same noise gives the same target
    torch.testing.assert_close(learner.distill_target(obs, w.clone()), expected)


def test_update_trains_both_critics_and_distils_q_noise_toward_q_action(base_ckpt):
    ad = _adapter(base_ckpt, distill_base=64, distill_actor=0)
    learner = ad.make_learner(SACConfig(**TINY_SAC, critic_lr=3e-3), seed=0)
    batch = _batch()
    qa0 = [p.clone() for p in learner.critic_a.parameters()]
    actor0 = [p.clone() for p in learner.actor.parameters()]
    obs = batch["obs"]
    w = (torch.randn(64, ad.act_dim, generator=torch.Generator().manual_seed(3)) / ad.scale).clamp(-1, 1)
    obs_w = obs[torch.arange(64) % 16]

    def gap():
        with torch.no_grad():
            return (learner.critic(learner.critic_input(obs_w, w)).mean(0) - learner.distill_target(obs_w, w)).abs().mean()

    logs = learner.update(batch, update_actor=False)
    assert {"critic_loss", "distill_loss", "q_noise_mean"} <= logs.keys()
    assert any(not torch.equal(a, b) for a, b in zip(qa0, learner.critic_a.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(actor0, learner.actor.parameters(), strict=True))
    # with Q^A frozen (its lr zeroed), distillation alone closes the Q^W–Q^A gap on base noises
    for g in learner.critic_a_opt.param_groups:
        g["lr"] = 0.0
    before = gap()
    for _ in range(150):
        learner.update(batch, update_actor=False)
    assert gap() < 0.5 * before
    learner.update(batch, update_actor=True)
    assert any(not torch.equal(a, b) for a, b in zip(actor0, learner.actor.parameters(), strict=True))


def _cfg(base_ckpt, out, steps=80):
    return FinetuneConfig(base=str(base_ckpt), method="dsrl-na", env="reach-v3", env_steps=steps, seed=0,
                          out=str(out), max_steps=20, warmup_decisions=10, eval_every=40, eval_episodes=2,
                          checkpoint_every=40, buffer_size=1000, tensorboard=False, sac=SACConfig(**TINY_SAC),
                          steering={"critic_warmup": 5}, final_episodes=0, sampler_noise_scale=1.0,
                          release_gate_episodes=0)  # the gate has its own tests (test_release_gate.py)


def test_finetune_keeps_base_frozen_and_save_load_acts_identically(base_ckpt, tmp_path):
    before = {k: v.clone() for k, v in load_policy(base_ckpt).state_dict().items()}
    tuner = Finetuner(_cfg(base_ckpt, tmp_path / "r"), progress=False)
    assert isinstance(tuner.sac, NoiseAliasSAC)
    out = tuner.run()
    for k, v in tuner.base.state_dict().items():
        assert torch.equal(v, before[k]), f"base parameter {k} changed"
    assert tuner.sac.updates > 0
    steered = load_policy(out / "policy")
    assert steered.adapter.name == "dsrl-na"
    obs = np.random.default_rng(1).standard_normal((3, 39)).astype(np.float32)
    np.testing.assert_array_equal(steered.predict_chunk(obs), tuner.steered_policy().predict_chunk(obs))


def test_same_seed_same_run_and_resume_continues_exactly(base_ckpt, tmp_path):
    full = Finetuner(_cfg(base_ckpt, tmp_path / "full", steps=120), progress=False)
    full.run()
    again = Finetuner(_cfg(base_ckpt, tmp_path / "again", steps=120), progress=False)
    again.run()
    part = Finetuner(_cfg(base_ckpt, tmp_path / "part", steps=120), progress=False)
    part.cfg.env_steps = 60  # stops after the first training-state snapshot
    part.run()
    resumed = Finetuner(_cfg(base_ckpt, tmp_path / "part", steps=120), progress=False)
    assert resumed.load_state() and resumed.env_steps == part.env_steps
    resumed.run()
    full_t, full_meta = full.sac.state_dict()
    assert any(k.startswith("critic_a.") for k in full_t) and "critic_a_opt" in full_meta
    for other in (again, resumed):
        t, meta = other.sac.state_dict()
        assert t.keys() == full_t.keys() and meta["updates"] == full_meta["updates"]
        for k, v in full_t.items():
            assert torch.equal(v, t[k]), k
    rows = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    rows_again = [json.loads(x) for x in (tmp_path / "again" / "metrics.jsonl").read_text().splitlines()]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "steps_per_s"} for r in rs]  # noqa: E731
    assert strip(rows) == strip(rows_again)
