"""Per-user adapters: what a sealed release seals (the trained difference from the public base).

* `lora`  rank-r deltas W += s·B·A on chosen nn.Linear layers (default: all of them), sealed merged;
* `full`  new values for every trained parameter (the per-user fine-tune itself).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from steerlab.core.devices import place
from steerlab.core.errors import CheckpointError, UserError

ADAPTER_KINDS = ("lora", "full")


class BlobDamagedError(CheckpointError):
    """One blob is unreadable, malformed, or bound to another base / release / slot: that blob only."""


@dataclass
class AdapterConfig:
    kind: str = "lora"
    """`lora`: rank-r deltas on nn.Linear layers; `full`: new values for every parameter (per-user fine-tune)."""
    rank: int = 8
    """LoRA rank (lora only)."""
    alpha: float = 16.0
    """LoRA scale numerator: the delta is (alpha / rank)·B·A."""
    layers: list[str] | None = None
    """nn.Linear layers that get a LoRA delta (None: every nn.Linear layer of the model)."""


def linear_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


class LoRADelta(nn.Module):
    """A frozen nn.Linear plus a trainable (alpha/rank)·B·A; B starts at 0, so training starts at the base."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.linear = linear
        self.a = nn.Parameter(torch.randn(rank, linear.in_features) / linear.in_features**0.5)
        self.b = nn.Parameter(torch.zeros(linear.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x):
        return self.linear(x) + self.scale * nn.functional.linear(nn.functional.linear(x, self.a), self.b)


def train_adapter(base: nn.Module, task, user: int, train_cfg, adapter: AdapterConfig):
    """Fit one user's adapter on that user's objective with the base frozen: (tensors, metadata) to seal."""
    from steerlab.privacy.prop.keyed import replace_module
    from steerlab.privacy.prop.training import learner_of

    if adapter.kind not in ADAPTER_KINDS:
        raise UserError(f"adapter kind must be one of {ADAPTER_KINDS}, got {adapter.kind!r}")
    torch.manual_seed(train_cfg.seed)  # the LoRA initialisation (and any sampling in the loss): same seed, same adapter
    model = copy.deepcopy(base)
    if adapter.kind == "full":
        learner_of(task).fit_personal(place(model), list(model.parameters()), task, user, train_cfg)
        before = dict(base.named_parameters())
        tensors = {n: p.detach().clone() for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        return tensors, {"kind": "full"}
    layers = adapter.layers or linear_layers(model)
    unknown = [n for n in layers if n not in linear_layers(model)]
    if unknown or not layers:
        raise UserError(f"cannot add LoRA deltas to {unknown or layers}: not nn.Linear layers of the model; its "
                        f"linear layers are {linear_layers(model)}")
    for p in model.parameters():
        p.requires_grad_(False)
    deltas = {n: replace_module(model, n, lambda lin: LoRADelta(lin, adapter.rank, adapter.alpha)) for n in layers}
    place(model)  # the new LoRA factors too (their identity is kept)
    learner_of(task).fit_personal(model, [p for d in deltas.values() for p in (d.a, d.b)], task, user, train_cfg)
    # merged per-layer weight deltas: smaller to apply, and nothing about A and B separately is needed
    tensors = {f"{n}.weight": (d.scale * d.b @ d.a).detach().clone() for n, d in deltas.items()}
    return tensors, {"kind": "lora", "rank": adapter.rank}


@torch.no_grad()
def apply_adapter(base: nn.Module, tensors: dict[str, torch.Tensor], meta: dict, where: str) -> nn.Module:
    """A copy of `base` with the adapter merged in: the same architecture, so the same inference cost."""
    model = copy.deepcopy(base)
    params = dict(model.named_parameters())
    for name, t in tensors.items():
        if name not in params or params[name].shape != t.shape:
            raise BlobDamagedError(f"{where}: the sealed part does not fit this base (tensor {name!r})")
        if meta.get("kind") == "full":
            params[name].copy_(t)
        else:
            params[name].add_(t)
    return model.eval()


