"""The steerable-policy protocol: what a policy must expose for each steering method.

steerlab steers *any* `torch.nn.Module` (or plain object) that implements the pieces a method needs;
nothing has to inherit from a steerlab class. Tensors are batched float32 on the CPU; observations are
raw (the policy normalizes them itself); actions are in environment units (the loop clips them to the
environment's action space).

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

Shapes: `obs` (B, obs_dim) -> chunk (B, horizon, action_dim); `noise` (B, *noise_shape);
`e` (B, embed_dim). `n_action_steps` of each chunk are executed before the policy is asked again.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch

from steerlab.core.errors import UserError

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
