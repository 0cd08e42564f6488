"""The vectorized finetune loop: N envs, batched decisions, UTD, same numbers sync/async, exact resume."""

import json

import numpy as np
import pytest
import torch

from steerlab.rl.sac import SACConfig
from steerlab.train.finetune import FinetuneConfig, Finetuner

POLICY = '''
import torch
from torch import nn


class Toy(nn.Module):
    obs_dim, action_dim, horizon, n_action_steps, noise_shape = 4, 2, 3, 2, (3, 2)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(4 + 6, 6)

    def sample_chunk(self, obs, noise=None):
        noise = torch.zeros(obs.shape[0], 3, 2) if noise is None else noise
        return torch.tanh(self.net(torch.cat([obs, noise.flatten(1)], -1))).reshape(-1, 3, 2)


def make():
    return Toy()
'''


@pytest.fixture
def toy_policy(policy_module):
    return policy_module("vec_toy_policy", POLICY)


def _cfg(policy, out, steps=150, **kw):
    base = dict(base=policy, method="dsrl", env="steerlab/PointReach-v0", max_steps=15, env_steps=steps, seed=1,
                out=str(out), warmup_decisions=6, eval_every=60, eval_episodes=1, checkpoint_every=60,
                buffer_size=500, tensorboard=False, sac=SACConfig(hidden=16, batch_size=8), n_envs=3,
                final_episodes=0, sampler_noise_scale=1.0)
    return FinetuneConfig(**{**base, **kw})


def _metrics(out):
    return [{k: v for k, v in json.loads(x).items() if k != "steps_per_s"}
            for x in (out / "metrics.jsonl").read_text().splitlines()]


def _same_sac(a, b):
    ta, ma = a.sac.state_dict()
    tb, mb = b.sac.state_dict()
    assert ma["updates"] == mb["updates"] and ta.keys() == tb.keys()
    for k, v in ta.items():
        assert torch.equal(v, tb[k]), k


def test_sync_and_async_envs_give_the_same_numbers(toy_policy, tmp_path):
    runs = []
    for name, asynchronous in (("sync", False), ("async", True), ("sync2", False)):
        t = Finetuner(_cfg(toy_policy, tmp_path / name, async_envs=asynchronous), progress=False)
        t.run()
        runs.append(t)
    assert _metrics(tmp_path / "sync") == _metrics(tmp_path / "async") == _metrics(tmp_path / "sync2")
    _same_sac(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0].replay.obs, runs[1].replay.obs)
    assert runs[0].episodes >= 9 and runs[0].env_steps >= 150


def test_one_batched_actor_call_per_decision(toy_policy, tmp_path, monkeypatch):
    t = Finetuner(_cfg(toy_policy, tmp_path / "r", steps=90, warmup_decisions=0), progress=False)
    batches = []
    act = t.sac.act
    monkeypatch.setattr(t.sac, "act", lambda obs, deterministic=False: batches.append(len(obs)) or act(obs, deterministic))
    t.run()
    assert max(batches) == 3  # all three envs decided in one call
    assert t.decisions < len(t.replay) + 1 and sum(batches) >= t.decisions


@pytest.mark.parametrize("utd", [0.5, 2.0])
def test_update_to_data_ratio(toy_policy, tmp_path, utd):
    t = Finetuner(_cfg(toy_policy, tmp_path / "r", steps=120, utd=utd, checkpoint_every=10_000), progress=False)
    t.run()
    gated = t.decisions - max(t.cfg.warmup_decisions, t.cfg.sac.batch_size) + 1  # transitions past the gate
    owed = t.update_credit
    assert t.sac.updates + owed == pytest.approx(utd * gated)
    assert owed <= t.update_cap  # the last transitions' updates may still be owed


def test_resume_continues_exactly_with_several_envs(toy_policy, tmp_path):
    full = Finetuner(_cfg(toy_policy, tmp_path / "full", steps=200), progress=False)
    full.run()
    part = Finetuner(_cfg(toy_policy, tmp_path / "part", steps=200), progress=False)
    part.cfg.env_steps = 100  # stops mid-episode; the resume point is the snapshot taken at >= 60 steps
    part.run()
    resumed = Finetuner(_cfg(toy_policy, tmp_path / "part", steps=200), progress=False)
    assert resumed.load_state() and 60 <= resumed.env_steps < 100 < part.env_steps + 3
    resumed.run()
    assert resumed.env_steps == full.env_steps and resumed.episodes == full.episodes
    _same_sac(full, resumed)
    np.testing.assert_array_equal(full.replay.obs, resumed.replay.obs)
