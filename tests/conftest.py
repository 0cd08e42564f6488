import sys

import numpy as np
import pytest
import torch

from steerlab.data.dataset import Episode, write_dataset


def make_episodes(n=4, length=12, obs_dim=39, act_dim=4, seed=0):
    rng = np.random.default_rng(seed)
    eps = []
    for i in range(n):
        obs = rng.standard_normal((length + i, obs_dim)).astype(np.float32)
        act = np.tanh(obs[:, :act_dim] * 0.5).astype(np.float32)  # a learnable obs -> action map
        eps.append(Episode(obs, act, rng.random(length + i).astype(np.float32), bool(i % 2),
                           meta={"noise_std": 0.1 * i}))
    return eps


@pytest.fixture
def tiny_dataset(tmp_path):
    return write_dataset(tmp_path / "ds", make_episodes(), "push-wall-v3",
                         extra_info={"env": "metaworld", "max_steps": 30})


TINY_POLICY = {"hidden": 32, "embed_dim": 16, "vib_hidden": 32, "latent_dim": 4, "encoder_depth": 1,
               "velocity_depth": 2, "vib_depth": 2}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def policy_module(tmp_path, monkeypatch):
    """Write a policy module into tmp_path and return its `module:make` reference (a user's own policy)."""
    written = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(source)
        written.append(name)
        return f"{name}:make"

    monkeypatch.syspath_prepend(str(tmp_path))
    yield write
    for name in written:
        sys.modules.pop(name, None)


# a user's own protocol policy for Gymnasium's Pendulum-v1 (chunks of 4 actions, 2 executed; steerable noise)
PENDULUM_POLICY = '''
import torch
from torch import nn


class PendulumChunks(nn.Module):
    obs_dim, action_dim, horizon, n_action_steps, noise_shape = 3, 1, 4, 2, (4, 1)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(3 + 4, 4)

    def sample_chunk(self, obs, noise=None):
        noise = torch.zeros(obs.shape[0], 4, 1) if noise is None else noise
        return 2 * torch.tanh(self.net(torch.cat([obs, noise.flatten(1)], -1))).unsqueeze(-1)


def make():
    return PendulumChunks()
'''


@pytest.fixture
def pendulum_policy(policy_module):
    """`module:make` of PENDULUM_POLICY, written into tmp_path (the current folder of a user's project)."""
    return policy_module("pendulum_policy", PENDULUM_POLICY)


@pytest.fixture(scope="module")
def base_ckpt(tmp_path_factory):
    """A tiny flow-matching base (reach-v3-shaped frames, 30 steps): one per test module, never written to."""
    from steerlab.train.pretrain import PretrainConfig, pretrain

    root = tmp_path_factory.mktemp("base")
    ds = write_dataset(root / "ds", make_episodes(), "reach-v3", extra_info={"env": "metaworld", "max_steps": 20})
    return pretrain(PretrainConfig(dataset=str(ds), out=str(root / "ckpt"), steps=30, batch_size=16,
                                   policy=dict(TINY_POLICY)), progress=False)
