"""Replay buffer on numpy arrays; batched adds, seeded sampling, exact save/resume (no pickle)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

FIELDS = ("obs", "action", "reward", "next_obs", "discount", "terminated")


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int, act_dim: int, seed: int = 0):
        self.capacity, self.obs_dim, self.act_dim = int(capacity), obs_dim, act_dim
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros((capacity, act_dim), np.float32)
        self.reward = np.zeros(capacity, np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.discount = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.ptr = 0
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward, next_obs, discount, terminated) -> None:
        """Add a batch of B transitions (leading dimension B on every argument)."""
        obs = np.asarray(obs, np.float32).reshape(-1, self.obs_dim)
        n = obs.shape[0]
        values = {"obs": obs, "action": np.asarray(action, np.float32).reshape(n, self.act_dim),
                  "reward": np.asarray(reward, np.float32).reshape(n),
                  "next_obs": np.asarray(next_obs, np.float32).reshape(n, self.obs_dim),
                  "discount": np.asarray(discount, np.float32).reshape(n),
                  "terminated": np.asarray(terminated, np.float32).reshape(n)}
        idx = (self.ptr + np.arange(n)) % self.capacity
        for name, v in values.items():
            getattr(self, name)[idx] = v
        self.ptr = int((self.ptr + n) % self.capacity)
        self.size = int(min(self.size + n, self.capacity))

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = self.rng.integers(0, self.size, batch_size)
        return {name: torch.from_numpy(getattr(self, name)[idx]) for name in FIELDS}

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **{name: getattr(self, name)[: self.size] for name in FIELDS},
                         meta=np.array(json.dumps({"ptr": self.ptr, "size": self.size, "capacity": self.capacity,
                                                   "rng": self.rng.bit_generator.state})))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, path: str | Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta["capacity"] != self.capacity:
                    raise ValueError(f"{path}: saved capacity {meta['capacity']} != {self.capacity}")
                for name in FIELDS:
                    getattr(self, name)[: meta["size"]] = data[name]
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"replay buffer {path} is missing or corrupt ({err})") from err
        self.ptr, self.size = meta["ptr"], meta["size"]
        self.rng.bit_generator.state = meta["rng"]
