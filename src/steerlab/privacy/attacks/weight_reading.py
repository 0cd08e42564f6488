"""Weight amplification: compare the released weights with the public base and amplify the difference,
W_base + α·(W_released − W_base), then look at the no-key behaviour."""

from __future__ import annotations

import copy

import torch

from steerlab.privacy.attacks.core import Found, Target
from steerlab.privacy.attacks.registry import register

ALPHAS = (1.0, 2.0, 4.0, 8.0)


@torch.no_grad()
def relative_weight_change(t: Target) -> dict[str, float]:
    released = {k.replace(".linear.", "."): v for k, v in t.model.model.state_dict().items() if "encoder" not in k}
    return {n: float((released[n] - p).norm() / (p.norm() + 1e-12))
            for n, p in t.base.named_parameters() if n in released}


@register("weight_amplification", "released − base weight difference, amplified (no key)")
@torch.no_grad()
def weight_amplification(t: Target) -> Found:
    released = {k.replace(".linear.", "."): v for k, v in t.model.model.state_dict().items() if "encoder" not in k}
    models = []
    for a in ALPHAS:
        probe = copy.deepcopy(t.base).eval()
        for name, p in probe.named_parameters():
            if name in released:
                p.copy_(p + a * (released[name] - p))
        models.append(probe)
    return Found(models=models, evaluations=len(models))
