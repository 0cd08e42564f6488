"""Observations at the policy boundary: a flat state vector, or a LeRobot-style dict with cameras.

One convention, converted once, here:

* what environments and datasets give: `observation.state` float (state_dim,) and
  `observation.images.<camera>` **uint8 HWC** (H, W, 3), optionally with a leading batch axis;
* what policies receive: a dict of batched tensors, `observation.state` float32 (B, state_dim) and
  `observation.images.<camera>` **float32 CHW in [0, 1]** (B, 3, H, W).

`to_policy_obs` does that conversion and the validation (wrong size / dtype / channel order, a missing
camera, NaN pixels → one-line `UserError` naming the key and the expected shape). It is idempotent: a
dict that is already float32 CHW passes through (checked, not converted again), so a caller never has
to know whether its input was converted before.

A flat vector (or a dict holding only `observation.state`) given to a spec without cameras comes back as
the (B, state_dim) float32 tensor the state-only paths have always used, so those stay unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from steerlab.core.errors import UserError

STATE_KEY = "observation.state"
IMAGE_PREFIX = "observation.images."


def image_key(camera: str) -> str:
    return IMAGE_PREFIX + camera


def is_dict_obs(obs) -> bool:
    return isinstance(obs, Mapping)


@dataclass(frozen=True)
class ObservationSpec:
    """What a policy observes: the state size and, per camera, the image size (H, W) with 3 channels."""

    state_dim: int
    cameras: tuple[str, ...] = ()
    image_size: tuple[int, int] = (84, 84)

    @property
    def has_images(self) -> bool:
        return bool(self.cameras)

    def describe(self) -> str:
        h, w = self.image_size
        parts = [f"{STATE_KEY} ({self.state_dim},)"]
        parts += [f"{image_key(c)} uint8 ({h}, {w}, 3)" for c in self.cameras]
        return ", ".join(parts)


def _as_array(value, key: str):
    """A tensor or numpy array of `value`; refuses strings, objects and ragged lists with one line."""
    if torch.is_tensor(value):
        return value.detach().cpu()
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise UserError(f"{key} is not a numeric array ({err})") from err
    if arr.dtype.kind not in "fiub" or arr.dtype.kind == "b":
        raise UserError(f"{key} must hold numbers, got dtype {arr.dtype}")
    return arr


def _state_tensor(value, state_dim: int, key: str = STATE_KEY) -> torch.Tensor:
    x = _as_array(value, key)
    if torch.is_tensor(x):
        if x.dtype == torch.bool or x.is_complex():
            raise UserError(f"{key} must hold real numbers, got a {x.dtype} tensor")
        x = x.to(torch.float32)
    else:
        x = torch.as_tensor(x.astype(np.float32, copy=False))
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != state_dim:
        raise UserError(f"{key} must have shape ({state_dim},) or (batch, {state_dim}); got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise UserError(f"{key} contains NaN or inf")
    return x


def _image_tensor(value, key: str, size: tuple[int, int]) -> torch.Tensor:
    """uint8 HWC (or float32 CHW in [0, 1], already converted) -> float32 (B, 3, H, W) in [0, 1]."""
    h, w = size
    want = f"uint8 (H, W, 3) = ({h}, {w}, 3) or (batch, {h}, {w}, 3)"
    x = _as_array(value, key)
    is_uint8 = (x.dtype == torch.uint8) if torch.is_tensor(x) else (x.dtype == np.uint8)
    if not torch.is_tensor(x):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise UserError(f"{key} must be {want}; got shape {tuple(x.shape)}")
    if is_uint8:
        if x.shape[1:] == (3, h, w) and x.shape[-1] != 3:
            raise UserError(f"{key} is channels-first uint8 {tuple(x.shape)}; environments and datasets give "
                            f"channels-last {want}")
        if tuple(x.shape[1:]) != (h, w, 3):
            raise UserError(f"{key} must be {want}; got {tuple(x.shape)} (render or resize to {h}x{w})")
        return x.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    if x.dtype != torch.float32:
        raise UserError(f"{key} must be {want} (or float32 (batch, 3, {h}, {w}) in [0, 1]); got dtype {x.dtype}")
    if tuple(x.shape[1:]) != (3, h, w):
        raise UserError(f"{key}: a float image must be float32 (batch, 3, {h}, {w}) in [0, 1] (channels first); "
                        f"got {tuple(x.shape)} (pass uint8 (H, W, 3) frames to have them converted)")
    if not torch.isfinite(x).all():
        raise UserError(f"{key} contains NaN or inf pixels")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise UserError(f"{key}: float pixels must lie in [0, 1] (got [{float(x.min()):.3g}, {float(x.max()):.3g}]); "
                        f"pass uint8 frames to have them scaled")
    return x


def to_policy_obs(obs, spec: ObservationSpec):
    """What the policy sees: (B, state_dim) float32 for a state-only spec, else a dict of batched tensors
    (`observation.state` float32 (B, S), each `observation.images.<cam>` float32 (B, 3, H, W) in [0, 1])."""
    if not spec.has_images:
        if is_dict_obs(obs):
            if STATE_KEY not in obs:
                raise UserError(f"observation dict lacks {STATE_KEY!r} (expected ({spec.state_dim},))")
            obs = obs[STATE_KEY]
        return _state_tensor(obs, spec.state_dim, "observation")
    if not is_dict_obs(obs):
        raise UserError(f"this policy sees cameras: the observation must be a dict with {spec.describe()}; "
                        f"got a {type(obs).__name__}")
    if STATE_KEY not in obs:
        raise UserError(f"observation lacks {STATE_KEY!r}: expected shape ({spec.state_dim},)")
    out = {STATE_KEY: _state_tensor(obs[STATE_KEY], spec.state_dim)}
    h, w = spec.image_size
    for cam in spec.cameras:
        key = image_key(cam)
        if key not in obs:
            have = sorted(k for k in obs if k.startswith(IMAGE_PREFIX))
            raise UserError(f"observation lacks camera {key!r}: expected uint8 ({h}, {w}, 3); it has {have}")
        out[key] = _image_tensor(obs[key], key, spec.image_size)
    batch = {k: v.shape[0] for k, v in out.items()}
    if len(set(batch.values())) != 1:
        raise UserError(f"observation entries disagree on the batch size: {batch}")
    return out


def batch_size(obs) -> int:
    """Rows of a converted observation (tensor or dict of tensors)."""
    if is_dict_obs(obs):
        return int(next(iter(obs.values())).shape[0])
    return int(obs.shape[0])


def obs_device(obs) -> torch.device:
    """Device of a converted observation (tensor or dict of tensors)."""
    return (next(iter(obs.values())) if is_dict_obs(obs) else obs).device


def index_obs(obs, idx):
    """Rows `idx` of an observation (array/tensor, or a dict of them): how a loop picks some envs."""
    if is_dict_obs(obs):
        return {k: v[idx] for k, v in obs.items()}
    return obs[idx]


def stack_obs(frames: Sequence) -> object:
    """Stack per-step observations (arrays or dicts of arrays) along a new first axis, in numpy."""
    if frames and is_dict_obs(frames[0]):
        return {k: np.stack([np.asarray(f[k]) for f in frames]) for k in frames[0]}
    return np.stack([np.asarray(f) for f in frames])


def obs_nbytes_per_decision(spec: ObservationSpec, feature_dim: int) -> dict:
    """Memory of one replay transition's observation part, frames vs frozen features (see docs/protocol.md)."""
    h, w = spec.image_size
    frames = len(spec.cameras) * h * w * 3 + 4 * spec.state_dim
    return {"frames_bytes": frames, "features_bytes": 4 * int(feature_dim)}
