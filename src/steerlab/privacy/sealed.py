"""Sealed personalization: the public base, bit for bit, plus one encrypted blob of personal parameters per user.

What is sealed is whatever personalization trains beyond the public base — here a per-user *adapter*:

* `lora`  rank-r deltas W += s·B·A on chosen nn.Linear layers (default: all of them);
* `full`  new values for every trained parameter (the per-user fine-tune itself).

A blob is AES-256-GCM over the adapter's safetensors bytes. The AEAD key is HKDF-SHA256(user key, salt)
with a fresh random 16-byte salt per file (and a fresh 12-byte nonce); the associated data is the blob's
plaintext header, which binds it to the format version and the SHA-256 of the base's weights file, so a
blob cannot be replayed against another base. Layer names, ranks and sizes live inside the ciphertext.

Right key: authenticated decryption, the adapter is *merged* into the weights (no extra inference cost).
Wrong or no key: authentication fails (`SealedKeyError`), and the release is the public base — nothing
in it depends on the personal data, so no attack on the released bytes can see more than the base.
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
from dataclasses import dataclass

import torch
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from torch import nn

from steerlab.core.errors import CheckpointError, UserError
from steerlab.privacy.keys import UserKey

MAGIC = b"STLSEAL1"
SEALED_FORMAT = "steerlab-sealed"
SEALED_VERSION = 1
HKDF_INFO = b"steerlab/sealed/aead-key/v1"
ADAPTER_KINDS = ("lora", "full")


class SealedKeyError(UserError):
    """The key does not open a sealed blob (wrong key, or the blob was altered)."""


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


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a model's tensors (names, dtypes, shapes, bytes): what a blob is bound to."""
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k].detach().contiguous().cpu()
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def _aead_key(key: UserKey, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=HKDF_INFO).derive(key.raw)


# ----------------------------------------------------------------------------- the blob
def seal(tensors: dict[str, torch.Tensor], meta: dict[str, str], key: UserKey, base_sha256: str) -> bytes:
    """Encrypt named tensors (+ string metadata) for `key`, bound to the base whose weights hash to `base_sha256`."""
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    header = {"format": SEALED_FORMAT, "version": SEALED_VERSION, "aead": "AES-256-GCM", "kdf": "HKDF-SHA256",
              "salt": salt.hex(), "nonce": nonce.hex(), "base_sha256": base_sha256}
    head = json.dumps(header, sort_keys=True).encode()
    payload = save_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=meta)
    return MAGIC + len(head).to_bytes(4, "big") + head + AESGCM(_aead_key(key, salt)).encrypt(nonce, payload, head)


def read_header(blob: bytes, where: str = "sealed blob") -> tuple[dict, bytes, bytes]:
    if len(blob) < 12 or blob[:8] != MAGIC:
        raise CheckpointError(f"{where} is not a steerlab sealed file")
    n = int.from_bytes(blob[8:12], "big")
    head = blob[12:12 + n]
    try:
        header = json.loads(head)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{where}: corrupt header") from None
    if header.get("format") != SEALED_FORMAT or header.get("version") != SEALED_VERSION:
        raise CheckpointError(f"{where}: unsupported sealed format {header.get('format')!r} "
                              f"version {header.get('version')!r}")
    return header, head, blob[12 + n:]


def unseal(blob: bytes, key: UserKey, base_sha256: str, where: str = "sealed blob"):
    """(tensors, metadata) of a blob; `SealedKeyError` unless `key` authenticates it for this base."""
    header, head, ct = read_header(blob, where)
    if header.get("base_sha256") != base_sha256:
        raise CheckpointError(f"{where} was sealed for a different base model (weights hash mismatch)")
    try:
        salt, nonce = bytes.fromhex(header["salt"]), bytes.fromhex(header["nonce"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{where}: corrupt header (salt / nonce)") from None
    try:
        payload = AESGCM(_aead_key(key, salt)).decrypt(nonce, ct, head)
    except (InvalidTag, ValueError):
        raise SealedKeyError(f"{where}: authentication failed (not this user's key, or the file was altered)") from None
    try:
        tensors = load_bytes(payload)
        meta = json.loads(payload[8:8 + int.from_bytes(payload[:8], "little")]).get("__metadata__", {})
    except (SafetensorError, ValueError) as err:
        raise CheckpointError(f"{where}: corrupt sealed payload ({err})") from None
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{where}: tensor {name!r} holds NaN or inf")
    return tensors, meta


# ----------------------------------------------------------------------------- adapters
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
    from steerlab.privacy.keyed import replace_module
    from steerlab.privacy.train import learner_of

    if adapter.kind not in ADAPTER_KINDS:
        raise UserError(f"adapter kind must be one of {ADAPTER_KINDS}, got {adapter.kind!r}")
    torch.manual_seed(train_cfg.seed)  # the LoRA initialisation (and any sampling in the loss): same seed, same adapter
    model = copy.deepcopy(base)
    if adapter.kind == "full":
        learner_of(task).fit_personal(model, list(model.parameters()), task, user, train_cfg)
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
    learner_of(task).fit_personal(model, [p for d in deltas.values() for p in (d.a, d.b)], task, user, train_cfg)
    # merged per-layer weight deltas: smaller to apply, and nothing about A and B separately is needed
    tensors = {f"{n}.weight": (d.scale * d.b @ d.a).detach().clone() for n, d in deltas.items()}
    return tensors, {"kind": "lora", "rank": str(adapter.rank)}


@torch.no_grad()
def apply_adapter(base: nn.Module, tensors: dict[str, torch.Tensor], meta: dict, where: str) -> nn.Module:
    """A copy of `base` with the adapter merged in: the same architecture, so the same inference cost."""
    model = copy.deepcopy(base)
    params = dict(model.named_parameters())
    for name, t in tensors.items():
        if name not in params or params[name].shape != t.shape:
            raise CheckpointError(f"{where}: the sealed part does not fit this base (tensor {name!r})")
        if meta.get("kind") == "full":
            params[name].copy_(t)
        else:
            params[name].add_(t)
    return model.eval()


def policy_of(model: nn.Module) -> nn.Module:
    """The policy inside a keyed model or a sealed release (the model itself otherwise)."""
    from steerlab.privacy.keyed import KeyedModel

    return model.model if isinstance(model, (KeyedModel, SealedRelease)) else model


# ----------------------------------------------------------------------------- a release
class SealedRelease(nn.Module):
    """The public base and the sealed blobs. `set_key(key)` makes `model` the key's personal policy if the
    key opens one of the blobs, else the base (`strict=True`: raise `SealedKeyError` instead)."""

    def __init__(self, base: nn.Module, blobs: list[bytes], base_sha256: str, where: str = "release"):
        super().__init__()
        self.base, self.blobs, self.base_sha256, self.where = base.eval(), list(blobs), base_sha256, where
        self.model = self.base
        self._opened: dict[bytes, nn.Module] = {}  # per key, in process memory only (like a folded δ)

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def open(self, key: UserKey) -> nn.Module:
        """The personal policy of `key`; `SealedKeyError` if no blob authenticates with it."""
        if key.raw in self._opened:
            return self._opened[key.raw]
        for i, blob in enumerate(self.blobs):
            try:
                tensors, meta = unseal(blob, key, self.base_sha256, f"{self.where} blob {i}")
            except SealedKeyError:
                continue
            self._opened[key.raw] = apply_adapter(self.base, tensors, meta, f"{self.where} blob {i}")
            return self._opened[key.raw]
        raise SealedKeyError(f"{key!r} opens none of the {len(self.blobs)} sealed parts of {self.where} "
                             f"(authentication failed)")

    def set_key(self, key: UserKey | torch.Tensor | None, strict: bool = False) -> bool:
        """Select the policy for `key` (a UserKey or its 0/1 bits; None: the base). True if a blob opened."""
        if key is None:
            self.model = self.base
            return False
        if not isinstance(key, UserKey):
            key = UserKey.from_bits(torch.as_tensor(key))
        try:
            self.model = self.open(key)
            return True
        except SealedKeyError:
            if strict:
                raise
            self.model = self.base
            return False


# ----------------------------------------------------------------------------- what an attacker of a release gets
@torch.no_grad()
def attack_release(release: SealedRelease, task, user_bits: torch.Tensor, score_personal, base_personal: float,
                   correct_personal: float, n_random: int = 256, near_bits: tuple[int, ...] = (1, 2, 4, 8, 16),
                   n_near: int = 16, alphas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0), seed: int = 0) -> dict:
    """The attacks that apply to a sealed release, in the `attacks` block's format.

    The release exposes the base's weights and opaque blobs; there are no key encoders or gates to
    optimise. Key search tries `n_random` random keys and `n_near` keys at each distance in `near_bits`
    from the user's (the evaluator's knowledge, a stronger attacker than any real one) through the
    loader; weight reading amplifies the released weights' difference from the public base. Each
    attempt's outputs on probe inputs are compared with the base's: an attempt whose outputs are the
    base's bit for bit *is* the base behaviour (deterministic policy), so only the others are scored
    with `score_personal(run)` (rollouts for Meta-World) — here none are, but it is measured, not assumed.
    """
    from steerlab.privacy.attacks import recovered
    from steerlab.privacy.keys import flip_bits, random_keys

    gen = torch.Generator().manual_seed(seed)
    probe, _ = task.general_batch(256, torch.Generator().manual_seed(seed + 1))
    base_out = task.predict(release.base, probe)
    behaviours: list[torch.Tensor] = []

    def attempt(model) -> bool:
        out = task.predict(model, probe)
        if torch.equal(out, base_out):
            return False
        if not any(torch.allclose(out, b, atol=1e-4) for b in behaviours):
            behaviours.append(out)
        return recovered(score_personal(lambda x: task.predict(model, x)), base_personal, correct_personal)

    by_attack = {}
    keys = list(random_keys(n_random, len(user_bits), gen)) + [flip_bits(user_bits, d, gen) for d in near_bits
                                                               for _ in range(n_near)]
    hits = []
    for bits in keys:
        release.set_key(bits)
        hits.append(attempt(release))
    release.set_key(None)
    by_attack["key_search"] = {"best_of_n": float(any(hits)), "share": float(sum(hits) / len(hits)),
                               "attempts": len(hits)}
    released = dict(release.model.named_parameters())
    weight_hits = []
    for a in alphas:
        probe_model = copy.deepcopy(release.base)
        for name, p in probe_model.named_parameters():
            p.copy_(p + a * (released[name] - p))
        weight_hits.append(attempt(probe_model))
    by_attack["weight_reading"] = {"best_of_n": float(any(weight_hits)), "share": float(sum(weight_hits) / len(alphas)),
                                   "attempts": len(alphas)}
    every = hits + weight_hits
    return {"budget": len(every), "best_of_n": float(any(every)), "share": float(sum(every) / len(every)),
            "distinct_behaviours": float(len(behaviours)), "by_attack": by_attack}
