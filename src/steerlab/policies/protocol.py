"""The steerable-policy protocol: what a policy must expose for each steering method.

steerlab steers *any* `torch.nn.Module` (or plain object) that implements the pieces a method needs;
nothing has to inherit from a steerlab class. Tensors are batched float32 on the CPU; observations are
raw (the policy normalizes them itself); actions are in environment units.

| method            | the policy must expose                                                        |
|-------------------|-------------------------------------------------------------------------------|
| action-residual   | `obs_dim`, `action_dim`, `horizon`, `n_action_steps`, `sample_chunk(obs, noise=None)` |
| dsrl              | the above + `noise_shape`: `sample_chunk(obs, noise)` integrates from that initial noise |
| zprl              | the above + `embed_dim`, `embed(obs) -> e` (the observation embedding that conditions |
|                   | the generator) and `chunk_from_embedding(e_hat, noise=None)` (the generator conditioned |
|                   | on a replacement embedding). The VIB is steerlab's: built in (flow policy) or fitted |
|                   | post hoc on the policy's embeddings (`steerlab pretrain --vib-only --from <policy>`). |

Shapes: `obs` (B, obs_dim) -> chunk (B, horizon, action_dim); `noise` (B, *noise_shape);
`e` (B, embed_dim). `n_action_steps` of each chunk are executed before the policy is asked again.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from steerlab.core.errors import UserError

# method -> attributes it needs (in the order they are checked, so the error names the first missing one)
REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "action": ("obs_dim", "action_dim", "horizon", "n_action_steps", "sample_chunk"),
    "noise": ("obs_dim", "action_dim", "horizon", "n_action_steps", "sample_chunk", "noise_shape"),
    "embedding": ("obs_dim", "action_dim", "horizon", "n_action_steps", "sample_chunk", "noise_shape",
                  "embed_dim", "embed", "chunk_from_embedding"),
}

WHY = {
    "sample_chunk": "sample_chunk(obs, noise=None) -> (B, horizon, action_dim) actions in env units",
    "noise_shape": "noise_shape: the shape of the generator's initial noise per sample (for noise steering)",
    "embed": "embed(obs) -> (B, embed_dim): the observation embedding that conditions the generator",
    "embed_dim": "embed_dim: the size of embed(obs)",
    "chunk_from_embedding": "chunk_from_embedding(e, noise=None): the generator conditioned on a replacement e",
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
    """ZPRL: the embedding e that conditions the generator, and the generator conditioned on a new e."""

    embed_dim: int

    def embed(self, obs: torch.Tensor) -> torch.Tensor: ...

    def chunk_from_embedding(self, e: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor: ...


def check_steerable(policy, level: str, method: str = "") -> None:
    """Raise a one-line error naming the first piece `policy` lacks for steering at `level`."""
    if level not in REQUIREMENTS:
        raise ValueError(f"unknown protocol level {level!r}; known: {sorted(REQUIREMENTS)}")
    for name in REQUIREMENTS[level]:
        if not hasattr(policy, name):
            what = WHY.get(name, name)
            who = f"steering method {method!r}" if method else f"the {level!r} protocol"
            raise UserError(f"{type(policy).__name__} cannot be steered by {who}: it lacks `{what}` "
                            f"(see docs/protocol.md)")
