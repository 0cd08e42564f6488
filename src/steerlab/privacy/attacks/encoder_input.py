"""Encoder input: optimise a relaxed encoder input h = sigmoid(θ) ∈ (0, 1)^N through the real encoders,
so δ stays on the encoders' range, where the user's δ lies."""

from __future__ import annotations

import torch

from steerlab.privacy.attacks.core import Found, Target
from steerlab.privacy.attacks.registry import register


def relaxed_inputs(t: Target) -> torch.Tensor:
    """(restarts, N) encoder inputs in (0, 1) that maximise the divergence from the base."""
    theta = torch.randn(t.budget.restarts, t.model.key_bits, generator=t.generator(5)) * 2
    (theta,) = t.ascend([theta], lambda ls: t.encoder_gates(torch.sigmoid(ls[0])))
    return torch.sigmoid(theta)


@register("encoder_input", "Adam ascent on a relaxed encoder input in (0, 1)^N")
def encoder_input(t: Target) -> Found:
    inputs = relaxed_inputs(t)
    with torch.no_grad():
        return Found(deltas=t.encoder_gates(inputs), evaluations=t.budget.restarts * t.budget.iters)
