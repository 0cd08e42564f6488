"""Replay buffer on numpy float32 arrays: batched adds, seeded sampling, exact save/resume (no pickle).

A transition is (obs, action, reward, next_obs, discount, terminated), the layout `SAC.update` reads:
`discount` is the per-transition discount (γ^k for a chunk of k executed steps) and `terminated` is 1
only for true terminations (a time-limit truncation is stored with terminated = 0, so it bootstraps).

The buffer is circular: once `capacity` transitions are stored, each add overwrites the oldest.
`save`/`load` write one `.npz` (temp file + `os.replace`, loaded with `allow_pickle=False`) holding the
stored transitions, the write pointer, the size and the sampling generator's state (as a JSON string),
so a resumed run samples exactly what an uninterrupted one would.
"""

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
        if int(capacity) < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.capacity, self.obs_dim, self.act_dim = int(capacity), int(obs_dim), int(act_dim)
        self.obs = np.zeros((self.capacity, self.obs_dim), np.float32)
        self.action = np.zeros((self.capacity, self.act_dim), np.float32)
        self.reward = np.zeros(self.capacity, np.float32)
        self.next_obs = np.zeros((self.capacity, self.obs_dim), np.float32)
        self.discount = np.zeros(self.capacity, np.float32)
        self.terminated = np.zeros(self.capacity, np.float32)
        self.ptr = 0  # next slot to write
        self.size = 0  # stored transitions (≤ capacity)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def _shapes(self, n: int) -> dict[str, tuple[int, ...]]:
        return {"obs": (n, self.obs_dim), "action": (n, self.act_dim), "reward": (n,),
                "next_obs": (n, self.obs_dim), "discount": (n,), "terminated": (n,)}

    def add(self, obs, action, reward, next_obs, discount, terminated) -> None:
        """Add B transitions at once (a vectorized env's step): obs (B, obs_dim), action (B, act_dim),
        reward/discount/terminated (B,) (or (B, 1)); a single unbatched transition is accepted too."""
        obs = np.asarray(obs, np.float32)
        n = 1 if obs.ndim == 1 else obs.shape[0]
        values = {}
        for name, v in zip(FIELDS, (obs, action, reward, next_obs, discount, terminated)):
            v = np.asarray(v, np.float32)
            shape = self._shapes(n)[name]
            if v.size != int(np.prod(shape)):
                raise ValueError(f"ReplayBuffer.add: {name} has shape {v.shape}, expected {shape} for {n} transitions")
            values[name] = v.reshape(shape)
            if not np.isfinite(values[name]).all():
                raise ValueError(f"ReplayBuffer.add: {name} contains NaN or inf")
        if n > self.capacity:  # only the newest `capacity` transitions survive anyway
            values = {k: v[-self.capacity:] for k, v in values.items()}
            self.ptr = (self.ptr + n - self.capacity) % self.capacity
            n = self.capacity
        idx = (self.ptr + np.arange(n)) % self.capacity
        for name, v in values.items():
            getattr(self, name)[idx] = v
        self.ptr = int((self.ptr + n) % self.capacity)
        self.size = int(min(self.size + n, self.capacity))

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """`batch_size` transitions drawn uniformly with replacement, as float32 CPU tensors."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = self.rng.integers(0, self.size, batch_size)
        return {name: torch.from_numpy(getattr(self, name)[idx]) for name in FIELDS}

    # ------------------------------------------------------------------ save / resume
    def _meta(self) -> dict:
        return {"ptr": self.ptr, "size": self.size, "capacity": self.capacity, "obs_dim": self.obs_dim,
                "act_dim": self.act_dim, "rng": self.rng.bit_generator.state}

    def save(self, path: str | Path, tag: dict | None = None) -> None:
        """Write `path` (.npz) atomically: the stored transitions, pointer, size and generator state
        (+ `tag`, e.g. the env step of a training-state snapshot)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.chmod(tmp, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **{name: getattr(self, name)[: self.size] for name in FIELDS},
                         meta=np.array(json.dumps({**self._meta(), "tag": tag or {}}, allow_nan=False)))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, path: str | Path) -> dict:
        """Restore a buffer saved by `save` (its capacity and sizes must match this one's); returns its `tag`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {name: data[name] for name in FIELDS}
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as err:
            raise ValueError(f"replay buffer {path} is missing or corrupt ({err})") from err
        mine = {k: self._meta()[k] for k in ("capacity", "obs_dim", "act_dim")}
        saved = {k: meta.get(k, mine[k]) for k in mine}
        if saved != mine:
            raise ValueError(f"replay buffer {path} was saved with {saved}, this buffer has {mine}")
        size = int(meta["size"])
        for name in FIELDS:
            if arrays[name].shape != self._shapes(size)[name]:
                raise ValueError(f"replay buffer {path} is corrupt: {name} has shape {arrays[name].shape}")
        for name in FIELDS:
            buf = getattr(self, name)
            buf[:size] = arrays[name]
            buf[size:] = 0
        self.ptr, self.size = int(meta["ptr"]), size
        self.rng.bit_generator.state = meta["rng"]
        return meta.get("tag", {})
