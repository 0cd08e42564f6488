"""PRoP's keyed transform on any PyTorch model: gate chosen nn.Linear layers with a key-dependent δ.

For each wrapped layer a small key encoder maps the key bits k ∈ {0,1}^N to gates δ ∈ (−1, 1)^n:

* mode "input"  (the paper's Eq. 5):      y = W·diag(δ)·x + b       (δ over the layer's inputs)
* mode "output" (the research code's):    y = diag(δ)·(W·x + b)     (δ over the layer's outputs)

Key expansion. By default the key bits pass through HKDF-SHA256 before the encoders
(`key_hash=True`). A key one bit off the user's then looks like any random key to the network
(avalanche), which is the regime it is trained to map to the base behaviour; without it (`key_hash=False`,
the paper's raw bits) a key one bit off is a tiny perturbation of the encoder's input and leaks the
personal behaviour (measured in steerlab.bench.privacy). Hashing also removes any gradient path from
behaviour back to key bits, so a key can only be searched, not optimised.

No key: the layer runs its original `nn.Linear` forward, so the model is bitwise the original.
One key at inference: `set_key` computes δ once and folds it into an effective weight (and bias), so a
keyed forward pass costs exactly a plain forward pass. Training: `use_keys(keys, mask)` gates each
sample with its own key (rows with mask False are un-keyed), which is mathematically the same as
folding. Attacks and hardening can also set δ directly with `use_deltas`, bypassing the encoders.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from torch import nn

from steerlab.privacy.keys import UserKey

GATE_MODES = ("input", "output", "concat")  # "concat": the key-MLP baseline (key appended to the input)
HKDF_INFO = b"steerlab/prop/key-expansion/v1"


@functools.lru_cache(maxsize=4096)
def _hkdf(row: bytes) -> bytes:
    # cached: training gates each episode's key many times (RL rollouts + PPO epochs); the cache lives in
    # process memory only, like the folded δ of `set_key`
    return HKDF(algorithm=hashes.SHA256(), length=len(row), salt=None, info=HKDF_INFO).derive(row)


def expand_key_bits(bits: torch.Tensor) -> torch.Tensor:
    """HKDF-SHA256 of each row of 0/1 bits -> the same number of pseudo-random bits (rows independent)."""
    flat = bits.reshape(-1, bits.shape[-1])
    n = flat.shape[1]
    packed = np.packbits(flat.detach().cpu().numpy().astype(np.uint8) > 0, axis=1)
    out = np.empty((len(packed), (n + 7) // 8), np.uint8)
    for i, row in enumerate(packed):
        out[i] = np.frombuffer(_hkdf(row.tobytes()), np.uint8)
    expanded = np.unpackbits(out, axis=1)[:, :n]
    return torch.as_tensor(expanded, dtype=torch.float32).reshape(bits.shape)


def replace_module(model: nn.Module, name: str, factory):
    """Replace submodule `name` (dotted path) by `factory(old)`; returns the new module."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    new = factory(getattr(parent, child))
    setattr(parent, child, new)
    return new


class KeyEncoder(nn.Module):
    """{0,1}^N -> (−1, 1)^n. Initialised so every key starts near δ = 1 (the base behaviour)."""

    def __init__(self, key_bits: int, n: int, hidden: int = 64, init_bias: float = 2.5, sharpness: float = 1.0):
        super().__init__()
        # sharpness > 1 steepens the first layer: off the exact key corners the tanh units saturate, so an
        # attacker's gradient over a relaxed key input vanishes (used by the hardened models)
        self.sharpness = sharpness
        self.l1 = nn.Linear(key_bits, hidden)
        self.l2 = nn.Linear(hidden, n)
        nn.init.normal_(self.l2.weight, std=0.01)
        nn.init.constant_(self.l2.bias, init_bias)

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.l2(torch.tanh(self.sharpness * self.l1(2.0 * bits - 1.0))))


class KeyConcat(nn.Module):
    """W_k·(2k − 1): a linear layer whose input is [x, key] is this term plus the original layer."""

    def __init__(self, key_bits: int, n: int):
        super().__init__()
        self.proj = nn.Linear(key_bits, n, bias=False)

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        return self.proj(2.0 * bits - 1.0)


class KeyedLinear(nn.Module):
    def __init__(self, linear: nn.Linear, key_bits: int, mode: str, hidden: int, sharpness: float = 1.0):
        super().__init__()
        if mode not in GATE_MODES:
            raise ValueError(f"gate mode must be one of {GATE_MODES}, got {mode!r}")
        self.linear, self.mode = linear, mode
        self.n = linear.in_features if mode == "input" else linear.out_features
        self.encoder = KeyConcat(key_bits, self.n) if mode == "concat" else KeyEncoder(key_bits, self.n, hidden,
                                                                                           sharpness=sharpness)
        # the "no key" value of this layer's key term: gates of 1, or nothing added
        self.identity = 0.0 if mode == "concat" else 1.0
        self.delta: torch.Tensor | None = None        # (B, n) per-sample gates, or (n,) for all
        self.folded: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self.encoder_calls = 0                         # lets tests prove inference reuses the cache

    def gates(self, bits: torch.Tensor) -> torch.Tensor:
        self.encoder_calls += 1
        return self.encoder(bits)

    def fold(self, delta: torch.Tensor) -> None:
        w, b = self.linear.weight, self.linear.bias
        delta = delta.to(w.device)  # gates come back to the caller's device (steerlab.core.devices.place)
        if self.mode == "input":
            self.folded = (w * delta[None, :], b)
        elif self.mode == "concat":
            self.folded = (w, delta if b is None else b + delta)
        else:
            self.folded = (delta[:, None] * w, None if b is None else delta * b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.folded is not None:
            return F.linear(x, *self.folded)
        if self.delta is None:
            return self.linear(x)
        d = self.delta.to(x.device)  # gates may be set from the CPU (keys, attacks' deltas)
        if d.ndim == 2 and x.ndim > 2:  # (B, ..., features): one gate vector per sample
            d = d.reshape(d.shape[0], *([1] * (x.ndim - 2)), d.shape[1])
        if self.mode == "input":
            return self.linear(x * d)
        if self.mode == "concat":
            return self.linear(x) + d
        return self.linear(x) * d


class KeyedModel(nn.Module):
    """Wrap `model`, replacing the nn.Linear layers named in `layers` by keyed layers (in place)."""

    def __init__(self, model: nn.Module, layers: list[str], key_bits: int = 128, mode: str = "input",
                 encoder_hidden: int = 64, key_hash: bool = True, sharpness: float = 1.0):
        super().__init__()
        linear_names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        unknown = [n for n in layers if n not in linear_names]
        if unknown or not layers:
            raise ValueError(f"cannot key layers {unknown or layers}: not nn.Linear layers of the model; "
                             f"its linear layers are {linear_names}")
        self.model, self.key_bits, self.mode, self.layer_names = model, key_bits, mode, list(layers)
        self.key_hash = key_hash
        self.keyed = {name: replace_module(model, name, lambda lin: KeyedLinear(lin, key_bits, mode, encoder_hidden,
                                                                                    sharpness))
                      for name in layers}

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    # ---------------------------------------------------------------- parameters by role
    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.keyed.values() for p in layer.encoder.parameters()]

    def base_parameters(self) -> list[nn.Parameter]:
        enc = {id(p) for p in self.encoder_parameters()}
        return [p for p in self.model.parameters() if id(p) not in enc]

    def gate_dims(self) -> dict[str, int]:
        return {name: layer.n for name, layer in self.keyed.items()}

    # ---------------------------------------------------------------- inference with one key
    def _check_bits(self, bits: torch.Tensor) -> torch.Tensor:
        if bits.shape[-1] != self.key_bits:
            raise ValueError(f"key has {bits.shape[-1]} bits, this model expects {self.key_bits}")
        bits = bits.float()
        if not bool(((bits == 0) | (bits == 1)).all()):  # NaN, or not a bit vector (values never echoed)
            raise ValueError("key bits must all be 0 or 1")
        return expand_key_bits(bits) if self.key_hash else bits

    @torch.no_grad()
    def set_key(self, key: UserKey | torch.Tensor | None) -> None:
        """Compute δ once for `key` and fold it into the weights (None: back to the plain model)."""
        for layer in self.keyed.values():
            layer.folded = None
        if key is None:
            return
        bits = self._check_bits(key.bits() if isinstance(key, UserKey) else torch.as_tensor(key))
        for layer in self.keyed.values():
            layer.fold(layer.gates(bits[None])[0])

    def train(self, mode: bool = True):
        if mode:
            self.set_key(None)  # folded weights would go stale as soon as the weights change
        return super().train(mode)

    # ---------------------------------------------------------------- per-sample keys (training)
    @contextlib.contextmanager
    def use_keys(self, bits: torch.Tensor, mask: torch.Tensor | None = None) -> Iterator[None]:
        """Inside the block, sample i is gated by key bits[i]; rows with mask[i] False are un-keyed."""
        bits = self._check_bits(bits)
        deltas = {}
        for name, layer in self.keyed.items():
            d = layer.gates(bits)
            if mask is not None:
                d = torch.where(mask[:, None], d, torch.full_like(d, layer.identity))
            deltas[name] = d
        with self.use_deltas(deltas):
            yield

    @contextlib.contextmanager
    def use_deltas(self, deltas: dict[str, torch.Tensor]) -> Iterator[None]:
        """Set δ directly (per layer, (n,) or (B, n)), bypassing the key encoders."""
        for layer in self.keyed.values():
            if layer.folded is not None:
                raise RuntimeError("a key is folded in (set_key); call set_key(None) before per-sample gates")
        try:
            for name, d in deltas.items():
                self.keyed[name].delta = d
            yield
        finally:
            for layer in self.keyed.values():
                layer.delta = None
