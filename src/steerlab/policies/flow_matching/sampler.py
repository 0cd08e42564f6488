"""Euler integration of a rectified-flow velocity field from noise (t=1) to data (t=0)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def euler_sample(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], noise: torch.Tensor,
                 steps: int) -> torch.Tensor:
    """Integrate dx/dt = v(x, t) backwards from x(1) = noise to x(0) in `steps` equal steps.

    With the path x_t = (1 - t)·a + t·ε the target velocity is ε − a, so one step moves
    x ← x − dt·v. A constant field v ≡ c is integrated exactly: x(0) = noise − c.
    """
    times = euler_times(noise.shape[0], steps, noise.dtype, noise.device)
    x = noise
    dt = 1.0 / steps
    for t in times:
        x = x - dt * velocity(x, t)
    return x


def euler_times(batch: int, steps: int, dtype: torch.dtype, device: torch.device | str) -> list[torch.Tensor]:
    """The times `euler_sample` visits, each a (batch,) tensor: 1, 1 − dt, ..., dt, computed as it computes
    them, so a caller may precompute what depends on t alone and get the same bits."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    dt = 1.0 / steps
    times = [torch.ones(batch, dtype=dtype, device=device)]
    for _ in range(steps - 1):
        times.append(times[-1] - dt)
    return times
