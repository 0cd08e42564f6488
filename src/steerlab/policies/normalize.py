"""Observation / action normalization that lives inside the policy (and so inside its checkpoint)."""

from __future__ import annotations

import torch
from torch import nn


class Normalizer(nn.Module):
    """Mean/std scaling; dimensions with (near) zero spread are left centred but unscaled."""

    def __init__(self, dim: int, min_std: float = 1e-2):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.min_std = min_std

    @torch.no_grad()
    def fit(self, mean, std) -> Normalizer:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(self.min_std))
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean
