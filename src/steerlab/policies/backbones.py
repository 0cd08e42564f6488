"""Small network building blocks shared by every model in steerlab."""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, depth: int = 2, act: type[nn.Module] = nn.GELU,
        layer_norm: bool = False) -> nn.Sequential:
    """`depth` hidden layers of width `hidden`, then a linear head (no output activation)."""
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(depth):
        layers.append(nn.Linear(d, hidden))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(act())
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)
