"""A user's OWN protocol policy for the reward-only envs, built exactly as docs/protocol.md tells a user.

A plain `torch.nn.Module` (no steerlab class, no built-in VIB) at the protocol's embedding level: an MLP encoder
of the normalized observation gives `e`, a small generator maps `(e, noise)` to a chunk in the action range. It
is trained by plain behaviour cloning (MSE on the demonstrated chunk, the noise drawn per sample) on demos of
the env's scripted expert, saved with `save_factory_policy` (the reference + a copy of the weights), and ZPRL
gets its latent from the plug-in VIB fitted post hoc (`steerlab pretrain --vib-only --from <that folder>`).

    steerlab.bench.own_policy:make_pendulum            Pendulum-v1 (obs 3, torque 1 in [-2, 2])
    steerlab.bench.own_policy:make_mountain_car        MountainCarContinuous-v0 (obs 2, force 1 in [-1, 1])
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class OwnChunkPolicy(nn.Module):
    horizon, n_action_steps = 4, 2
    embed_dim = 16

    def __init__(self, obs_dim: int, low: list[float], high: list[float], squash: bool = True):
        super().__init__()
        self.squash = squash  # False: a linear output head (the loop clips actions to the range)
        self.obs_dim, self.action_dim = obs_dim, len(low)
        self.noise_shape = (self.horizon, self.action_dim)
        # the observation normalization (fitted on the demos) and the action range: buffers, so they are saved
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.register_buffer("low", torch.tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.tensor(high, dtype=torch.float32))
        n = self.horizon * self.action_dim
        self.encoder = nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, self.embed_dim))
        self.generator = nn.Sequential(nn.Linear(self.embed_dim + n, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                                       nn.Linear(64, n))

    def embed(self, obs):
        return self.encoder((torch.as_tensor(obs, dtype=torch.float32) - self.obs_mean) / self.obs_std)

    def chunk_from_embedding(self, e, noise=None):
        if noise is None:
            noise = torch.randn(e.shape[0], *self.noise_shape)
        x = torch.cat([e, 0.1 * noise.flatten(1)], dim=-1)
        u = self.generator(x).reshape(-1, self.horizon, self.action_dim)
        u = torch.tanh(u) if self.squash else u
        return self.low + (u + 1) * 0.5 * (self.high - self.low)

    def sample_chunk(self, obs, noise=None):
        return self.chunk_from_embedding(self.embed(obs), noise)


def make_pendulum(squash: bool = True):
    torch.manual_seed(0)
    return OwnChunkPolicy(3, [-2.0], [2.0], squash)


def make_mountain_car(squash: bool = True):
    torch.manual_seed(0)
    return OwnChunkPolicy(2, [-1.0], [1.0], squash)


FACTORIES = {"Pendulum-v1": "steerlab.bench.own_policy:make_pendulum",
             "MountainCarContinuous-v0": "steerlab.bench.own_policy:make_mountain_car"}


def train_own_policy(env: str, dataset: str | Path, out: str | Path, steps: int = 3000, seed: int = 0,
                     squash: bool = True) -> Path:
    """Plain behaviour cloning of the env's own policy on `dataset` (the user's side of docs/protocol.md), saved
    as a factory checkpoint in `out` (kept if it is already there)."""
    from steerlab.core.refs import call_ref
    from steerlab.data.dataset import chunk_indices, read_dataset
    from steerlab.policies.factory import save_factory_policy

    out = Path(out)
    if (out / "model.safetensors").is_file():
        return out
    ref = FACTORIES[env]
    policy = call_ref(ref, "factory", squash=squash)
    ds = read_dataset(dataset)
    obs, acts = torch.as_tensor(ds.observations), torch.as_tensor(ds.actions)
    chunks = acts[torch.as_tensor(chunk_indices(ds, policy.horizon))]
    policy.obs_mean.copy_(obs.mean(0))
    policy.obs_std.copy_(obs.std(0).clamp_min(1e-3))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    policy.train()
    for _ in range(steps):
        b = torch.randint(0, len(obs), (256,), generator=gen)
        noise = torch.randn((len(b), *policy.noise_shape), generator=gen)
        loss = (policy.sample_chunk(obs[b], noise) - chunks[b]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()
    return save_factory_policy(policy, ref, out, kwargs={"squash": squash})
