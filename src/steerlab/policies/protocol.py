"""The steerable-policy protocol: what a policy must expose for each steering method.

steerlab steers *any* `torch.nn.Module` (or plain object) that implements the pieces a method needs;
nothing has to inherit from a steerlab class. Tensors are batched float32; observations are raw (the
policy normalizes them itself); actions are in environment units (the loop clips them to the
environment's action space).

Observations are either a flat float32 tensor (B, obs_dim), as always, or, for a policy that sees
cameras, a dict following LeRobot's naming: `observation.state` float32 (B, obs_dim) and
`observation.images.<camera>` float32 (B, 3, H, W) in [0, 1]. Environments and datasets give uint8
(H, W, 3) frames; `steerlab.core.observations.to_policy_obs` converts (and validates) them once at
the boundary, so a policy never sees uint8 HWC. Such a policy exposes `observation_spec` (an
`ObservationSpec`: state size, camera names, image size).

| level      | methods                    | the policy must expose                                          |
|------------|----------------------------|-----------------------------------------------------------------|
| action     | action-residual            | `obs_dim`, `action_dim`, `horizon`, `n_action_steps`, `sample_chunk(obs, noise=None)` |
| noise      | dsrl                       | the above + `noise_shape`: `sample_chunk(obs, noise)` integrates from that initial noise |
| embedding  | embedding-residual         | the above + `embed_dim`, `embed(obs) -> e` (the observation embedding that conditions the |
|            |                            | generator) and `chunk_from_embedding(e_hat, noise=None)` (the generator conditioned on a |
|            |                            | replacement embedding)                                           |
| latent     | zprl                       | the above + `vib`: a `steerlab.policies.vib.VIB` over `embed(obs)`. Built in for the flow |
|            |                            | policy; for any other policy fitted post hoc on its own embeddings |
|            |                            | (`steerlab.policies.plugin_vib.fit_plugin_vib`, or `steerlab pretrain --vib-only --from <policy>`) |

Optional: `normalize_obs(obs)`: the policy's own observation normalization; a method that shows the
raw observation to the RL actor (action-residual) uses it when present.

Optional (required for a camera policy steered by action-residual or by dsrl without `embed`):
`rl_features(obs) -> (B, rl_feature_dim)` and `rl_feature_dim`: the *frozen* features the SAC actor and
critic see in place of the observation (the policy's observation embedding, concatenated with its
normalized state). The policy is frozen, so these are a fixed function of the observation: SAC never
learns from pixels, and the replay buffer stores these features, not frames (84×84×3 uint8 ≈ 21 KB per
camera per decision, 2.1 GB per 100k transitions, twice with next-observations; F float32 features are
4·F bytes). `rl_features(policy, obs)` below is what methods call: it falls back to `normalize_obs(obs)`
(or `obs`) for flat observations, so state-only policies behave exactly as before.

Shapes: `obs` (B, obs_dim) -> chunk (B, horizon, action_dim); `noise` (B, *noise_shape);
`e` (B, embed_dim). `n_action_steps` of each chunk are executed before the policy is asked again.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch

from steerlab.core.errors import UserError
from steerlab.core.observations import ObservationSpec, is_dict_obs, to_policy_obs

# level -> attributes it needs (in the order they are checked, so the error names the first missing one)
_ACTION = ("obs_dim", "action_dim", "horizon", "n_action_steps", "sample_chunk")
REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "action": _ACTION,
    "noise": (*_ACTION, "noise_shape"),
    "embedding": (*_ACTION, "noise_shape", "embed_dim", "embed", "chunk_from_embedding"),
    "latent": (*_ACTION, "noise_shape", "embed_dim", "embed", "chunk_from_embedding", "vib"),
}
LEVELS = tuple(REQUIREMENTS)

WHY = {
    "sample_chunk": "sample_chunk(obs, noise=None) -> (B, horizon, action_dim) actions in env units",
    "noise_shape": "noise_shape: the shape of the generator's initial noise per sample (for noise steering)",
    "embed": "embed(obs) -> (B, embed_dim): the observation embedding that conditions the generator",
    "embed_dim": "embed_dim: the size of embed(obs)",
    "chunk_from_embedding": "chunk_from_embedding(e, noise=None): the generator conditioned on a replacement e",
    "vib": "vib: a VIB over embed(obs) (fit one post hoc: `steerlab pretrain --vib-only --from <policy>`)",
    "rl_features": "rl_features(obs) -> (B, F): the frozen features the RL actor sees for camera observations",
}


@runtime_checkable
class ChunkPolicy(Protocol):
    """Enough for action-space residual RL: the policy only has to act."""

    obs_dim: int
    action_dim: int
    horizon: int
    n_action_steps: int

    def sample_chunk(self, obs: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor: ...


@runtime_checkable
class NoiseSteerablePolicy(ChunkPolicy, Protocol):
    """DSRL: a generator whose initial noise the RL actor may choose."""

    noise_shape: tuple[int, ...]


@runtime_checkable
class EmbeddingSteerablePolicy(NoiseSteerablePolicy, Protocol):
    """The embedding e that conditions the generator, and the generator conditioned on a new e."""

    embed_dim: int

    def embed(self, obs: torch.Tensor) -> torch.Tensor: ...

    def chunk_from_embedding(self, e: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor: ...


@runtime_checkable
class LatentSteerablePolicy(EmbeddingSteerablePolicy, Protocol):
    """ZPRL: an embedding-steerable policy with a VIB over its embedding (built in or plug-in)."""

    vib: torch.nn.Module


def missing_piece(policy, level: str) -> str | None:
    """The first attribute `policy` lacks for `level` (None counts as absent), or None if it has them all."""
    if level not in REQUIREMENTS:
        raise ValueError(f"unknown protocol level {level!r}; known: {sorted(REQUIREMENTS)}")
    for name in REQUIREMENTS[level]:
        if getattr(policy, name, None) is None:
            return name
    return None


def check_steerable(policy, level: str, method: str = "") -> None:
    """Raise a one-line error naming the first piece `policy` lacks for steering at `level`."""
    name = missing_piece(policy, level)
    if name is not None:
        what = WHY.get(name, name)
        who = f"steering method {method!r}" if method else f"the {level!r} protocol"
        raise UserError(f"{type(policy).__name__} cannot be steered by {who}: it lacks `{what}` "
                        f"(see docs/protocol.md)")


def supports(policy, level: str) -> bool:
    return missing_piece(policy, level) is None


def observation_spec(policy) -> ObservationSpec:
    """What `policy` observes: its own `observation_spec`, else a flat state of `obs_dim`."""
    spec = getattr(policy, "observation_spec", None)
    return spec if spec is not None else ObservationSpec(int(policy.obs_dim))


def as_policy_obs(policy, obs):
    """Observation(s) as `policy` takes them (a (B, obs_dim) tensor, or a dict of batched tensors with
    float32 CHW images), validated; see `steerlab.core.observations`."""
    return to_policy_obs(obs, observation_spec(policy))


def rl_features(policy, obs) -> torch.Tensor:
    """The frozen (B, F) features of a converted observation that an RL actor/critic sees in its place."""
    fn = getattr(policy, "rl_features", None)
    if fn is not None:
        return fn(obs)
    if is_dict_obs(obs):
        raise UserError(f"{type(policy).__name__} takes camera observations but lacks `{WHY['rl_features']}` "
                        f"(see docs/protocol.md)")
    norm = getattr(policy, "normalize_obs", None)
    return norm(obs) if norm is not None else obs


def rl_feature_dim(policy) -> int:
    """F of `rl_features(policy, obs)`."""
    dim = getattr(policy, "rl_feature_dim", None)
    return int(dim) if dim is not None else int(policy.obs_dim)


def as_obs_tensor(obs, obs_dim: int) -> torch.Tensor:
    """Observation(s) as a (B, obs_dim) float32 tensor; a one-line error for the wrong shape or NaN/inf."""
    x = obs if torch.is_tensor(obs) else torch.as_tensor(np.asarray(obs, dtype=np.float32))
    x = x.to(torch.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != obs_dim:
        raise UserError(f"observation must have shape ({obs_dim},) or (batch, {obs_dim}); got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise UserError("observation contains NaN or inf")
    return x
