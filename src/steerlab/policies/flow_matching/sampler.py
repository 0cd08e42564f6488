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
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x = noise
    dt = 1.0 / steps
    t = torch.ones(noise.shape[0], dtype=noise.dtype, device=noise.device)
    for _ in range(steps):
        x = x - dt * velocity(x, t)
        t = t - dt
    return x
