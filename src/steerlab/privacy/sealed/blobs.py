"""Sealed personalization: the public base, bit for bit, plus one encrypted blob of personal parameters per user.

What is sealed is whatever personalization trains beyond the public base — here a per-user *adapter*:

* `lora`  rank-r deltas W += s·B·A on chosen nn.Linear layers (default: all of them);
* `full`  new values for every trained parameter (the per-user fine-tune itself).

A blob is AES-256-GCM over a *payload*: named tensors grouped in parts ("adapter/<param>"; a later part,
e.g. a steering actor, is sealed the same way under its own prefix) plus JSON metadata (each part's
description and the user's personal options: dataset path, goal offset, ...). The AEAD key is
HKDF-SHA256(user key, salt) with a fresh random 16-byte salt per file (and a fresh 12-byte nonce); the
associated data is the blob's plaintext header, which binds it to

* the format version, the SHA-256 of the base's weights and of the base's config (format v1 bound the
  weights only: editing `num_inference_steps` silently changed the personal policy);
* the release (a random id) and its size (`n_blobs`), and the blob's slot in it: a blob replayed from
  another release, moved to another slot, or left behind after other blobs were deleted is detected.

Right key: authenticated decryption, the adapter is *merged* into the weights (no extra inference cost).
Wrong or no key: authentication fails (`SealedKeyError`), and the release is the public base — nothing
in it depends on the personal data, so no attack on the released bytes can see more than the base.
"""

from __future__ import annotations

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

from steerlab.core.errors import UserError
from steerlab.privacy.keys import UserKey
from steerlab.privacy.sealed.adapters import BlobDamagedError, apply_adapter

MAGIC = b"STLSEAL1"  # the container (magic, length, JSON header, ciphertext); the header's version is the format
SEALED_FORMAT = "steerlab-sealed"
SEALED_VERSION = 2
HKDF_INFO = b"steerlab/sealed/aead-key/v1"
HKDF_CHECK_INFO = b"steerlab/sealed/key-check/v2"
MAX_HEADER = 1 << 16  # a header is ~400 bytes; a larger length field is damage, not a header
PAYLOAD_META = "steerlab"  # the safetensors metadata entry holding the payload's JSON


class SealedKeyError(UserError):
    """The key opens no sealed blob (wrong key, or no blob of this release opened)."""


@dataclass(frozen=True)
class Binding:
    """What every blob of one release is bound to (authenticated in its header); `slot` varies per blob."""

    base_sha256: str
    base_config_sha256: str
    release_id: str
    n_blobs: int

    @classmethod
    def new(cls, base_sha256: str, base_config_sha256: str, n_blobs: int) -> Binding:
        return cls(base_sha256, base_config_sha256, secrets.token_hex(16), n_blobs)

    def fields(self) -> dict:
        return {"base_sha256": self.base_sha256, "base_config_sha256": self.base_config_sha256,
                "release_id": self.release_id, "n_blobs": self.n_blobs}


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a model's tensors (names, dtypes, shapes, bytes): what a blob is bound to."""
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k].detach().contiguous().cpu()
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def config_sha256(config: dict | None) -> str:
    """SHA-256 of a base's config (canonical JSON): bound next to its weights, since the config changes the
    policy too (a flow policy's integration steps)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, allow_nan=False).encode()).hexdigest()


def _aead_key(key: UserKey, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=HKDF_INFO).derive(key.raw)


def _key_check(key: UserKey, salt: bytes) -> str:
    """A 128-bit check value of the key (another HKDF output: no more use to a key guesser than the AEAD
    tag). It tells "not this key" (skip the blob) from "this key's blob, but its bytes fail authentication"
    (damaged), and commits the blob to one key (AES-GCM alone does not)."""
    return HKDF(algorithm=hashes.SHA256(), length=16, salt=salt, info=HKDF_CHECK_INFO).derive(key.raw).hex()


# ----------------------------------------------------------------------------- payloads: named tensors + JSON
def pack(parts: dict[str, tuple[dict[str, torch.Tensor], dict]], personal: dict | None = None) -> bytes:
    """Serialize parts {name: (tensors, JSON metadata)} and the user's personal options into one payload."""
    tensors, meta = {}, {"parts": {}, "personal": personal or {}}
    for part, (ts, m) in parts.items():
        if "/" in part:
            raise UserError(f"a sealed part's name cannot contain '/': {part!r}")
        meta["parts"][part] = m
        tensors.update({f"{part}/{k}": v.detach().contiguous().cpu() for k, v in ts.items()})
    return save_bytes(tensors, metadata={PAYLOAD_META: json.dumps(meta, sort_keys=True, allow_nan=False)})


def unpack(payload: bytes, where: str) -> tuple[dict[str, tuple[dict[str, torch.Tensor], dict]], dict]:
    """(parts, personal options) of a payload."""
    try:
        tensors = load_bytes(payload)
        head = json.loads(payload[8:8 + int.from_bytes(payload[:8], "little")])
        meta = json.loads(head["__metadata__"][PAYLOAD_META])
        parts = {name: ({}, dict(m)) for name, m in meta["parts"].items()}
        personal = dict(meta.get("personal") or {})
    except (SafetensorError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise BlobDamagedError(f"{where}: corrupt sealed payload ({type(err).__name__})") from None
    for name, t in tensors.items():
        part, _, param = name.partition("/")
        if part not in parts:
            raise BlobDamagedError(f"{where}: tensor {name!r} belongs to no listed part")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise BlobDamagedError(f"{where}: tensor {name!r} holds NaN or inf")
        parts[part][0][param] = t
    return parts, personal


# ----------------------------------------------------------------------------- the blob
def seal(payload: bytes, key: UserKey, binding: Binding, slot: int) -> bytes:
    """Encrypt a payload (`pack`) for `key`, bound to `binding` and this blob's `slot`."""
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    header = {"format": SEALED_FORMAT, "version": SEALED_VERSION, "aead": "AES-256-GCM", "kdf": "HKDF-SHA256",
              "salt": salt.hex(), "nonce": nonce.hex(), "key_check": _key_check(key, salt), **binding.fields(),
              "slot": slot}
    head = json.dumps(header, sort_keys=True).encode()
    return MAGIC + len(head).to_bytes(4, "big") + head + AESGCM(_aead_key(key, salt)).encrypt(nonce, payload, head)


def read_header(blob: bytes, where: str = "sealed blob") -> tuple[dict, bytes, bytes]:
    """(header, header bytes, ciphertext); `BlobDamagedError` (one line) for anything malformed."""
    if not isinstance(blob, bytes) or len(blob) < 12 or blob[:8] != MAGIC:
        raise BlobDamagedError(f"{where} is not a steerlab sealed file (empty, truncated or wrong magic bytes)")
    n = int.from_bytes(blob[8:12], "big")
    if n > MAX_HEADER or 12 + n > len(blob):
        raise BlobDamagedError(f"{where}: corrupt header length ({n} bytes, file {len(blob)})")
    head = blob[12:12 + n]
    try:
        header = json.loads(head)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BlobDamagedError(f"{where}: corrupt header (not JSON)") from None
    if not isinstance(header, dict):
        raise BlobDamagedError(f"{where}: corrupt header (a JSON {type(header).__name__}, not an object)")
    if header.get("format") != SEALED_FORMAT:
        raise BlobDamagedError(f"{where}: not a steerlab sealed blob (format {header.get('format')!r})")
    if header.get("version") != SEALED_VERSION:
        hint = (": re-run `steerlab personalize` to rebuild the release in the current format"
                if isinstance(header.get("version"), int) and header["version"] < SEALED_VERSION else "")
        raise BlobDamagedError(f"{where}: sealed format version {header.get('version')!r} is not read by this "
                               f"steerlab (it reads version {SEALED_VERSION}){hint}")
    for field, kind in (("salt", str), ("nonce", str), ("key_check", str), ("base_sha256", str), ("base_config_sha256", str),
                        ("release_id", str), ("n_blobs", int), ("slot", int)):
        if not isinstance(header.get(field), kind) or isinstance(header.get(field), bool):
            raise BlobDamagedError(f"{where}: corrupt header (field {field!r} missing or not a {kind.__name__})")
    return header, head, blob[12 + n:]


def check_binding(header: dict, binding: Binding, slot: int, where: str) -> None:
    """Header fields against what this release expects (before decryption: they are public, and
    authenticated by the decryption that follows)."""
    if header["base_sha256"] != binding.base_sha256:
        raise BlobDamagedError(f"{where} was sealed for a different base model (weights hash mismatch)")
    if header["base_config_sha256"] != binding.base_config_sha256:
        raise BlobDamagedError(f"{where} was sealed for a different base config (config hash mismatch: the "
                               f"base's config.json was edited)")
    if header["release_id"] != binding.release_id:
        raise BlobDamagedError(f"{where} belongs to another release (id {header['release_id'][:8]}…, this release "
                               f"{binding.release_id[:8]}…): replayed or copied in")
    if header["slot"] != slot:
        raise BlobDamagedError(f"{where} was sealed for slot {header['slot']}, found in slot {slot} (moved)")


def unseal(blob: bytes, key: UserKey, binding: Binding, slot: int, where: str = "sealed blob"):
    """(parts, personal options, header) of a blob; `SealedKeyError` unless `key` authenticates it;
    `BlobDamagedError` if the blob is malformed or bound to another base, config, release or slot."""
    header, head, ct = read_header(blob, where)
    check_binding(header, binding, slot, where)
    try:
        salt, nonce = bytes.fromhex(header["salt"]), bytes.fromhex(header["nonce"])
    except ValueError:
        raise BlobDamagedError(f"{where}: corrupt header (salt / nonce)") from None
    if not secrets.compare_digest(_key_check(key, salt), header["key_check"]):
        raise SealedKeyError(f"{where}: not this key's blob")
    try:
        payload = AESGCM(_aead_key(key, salt)).decrypt(nonce, ct, head)
    except (InvalidTag, ValueError):
        raise BlobDamagedError(f"{where} is this key's but fails authentication (its bytes were altered)") from None
    parts, personal = unpack(payload, where)
    return parts, personal, header


KNOWN_PARTS = ("adapter", "steering")


def apply_parts(base: nn.Module, parts: dict, where: str, base_meta: dict | None = None):
    """The personal policy a payload's parts make of `base`: `adapter` merged into its weights, then a `steering`
    part (a steering method's SAC actor, steerlab.privacy.sealed.online) run on top. Unknown parts are refused rather
    than ignored, so a newer blob never runs as a silently partial policy."""
    unknown = sorted(set(parts) - set(KNOWN_PARTS))
    if unknown or not parts:
        raise BlobDamagedError(f"{where}: sealed parts {sorted(parts)} are not readable by this steerlab (it reads "
                               f"{', '.join(KNOWN_PARTS)}): update steerlab")
    model = base
    if "adapter" in parts:
        tensors, meta = parts["adapter"]
        model = apply_adapter(base, tensors, meta, where)
    if "steering" in parts:
        tensors, meta = parts["steering"]
        model = apply_steering(model, base_meta or {}, tensors, meta, where)
    return model


def apply_steering(base, base_meta: dict, tensors: dict, meta: dict, where: str):
    """The steered policy a sealed `steering` part (steerlab.privacy.sealed.online) makes of `base`: its SAC actor's
    tensors, and as metadata the steering options, SAC sizes, sampler noise scale and the user's env spec."""
    from steerlab.core.errors import CheckpointError
    from steerlab.rl.steering.steered import steered_from_parts

    try:
        return steered_from_parts(base, base_meta, meta, tensors, where)
    except (CheckpointError, UserError, KeyError, TypeError, ValueError, RuntimeError) as err:
        raise BlobDamagedError(f"{where}: the sealed steering part does not fit this base "
                               f"({type(err).__name__})") from None


def policy_of(model: nn.Module) -> nn.Module:
    """The policy inside a keyed model or a sealed release (the model itself otherwise)."""
    from steerlab.privacy.prop.keyed import KeyedModel

    return model.model if isinstance(model, (KeyedModel, SealedRelease)) else model


# ----------------------------------------------------------------------------- a release
NOT_OPENED = "no blob opened with this key"


@dataclass
class OpenStatus:
    """What a key did to a release: recorded in evaluation results (`personal_opened`, and why not)."""

    personal_opened: bool
    release_id: str
    slot: int | None = None
    reason: str | None = None
    damaged: dict[int, str] | None = None
    warnings: list[str] | None = None

    def to_json(self) -> dict:
        return {"personal_opened": self.personal_opened, "personal_slot": self.slot, "personal_reason": self.reason,
                "release_id": self.release_id, "damaged_blobs": {str(k): v for k, v in (self.damaged or {}).items()},
                "release_warnings": list(self.warnings or [])}


class SealedRelease(nn.Module):
    """The public base and the sealed blobs. `set_key(key)` makes `model` the key's personal policy if the
    key opens one of the blobs, else the base (`strict=True`: raise `SealedKeyError` instead).

    `blobs[i]` is slot i's bytes, or a `BlobDamagedError` when reading it already failed (missing, a
    folder, hash not the manifest's). Every blob is tried on its own: a damaged one is skipped and
    reported, so it affects only the user it belongs to."""

    def __init__(self, base: nn.Module, blobs: list, binding: Binding, where: str = "release",
                 notes: list[str] | None = None, base_meta: dict | None = None):
        super().__init__()
        self.base_meta = base_meta  # the base's config.json (a steering part needs its latent statistics)
        self.base, self.blobs, self.binding, self.where = base.eval(), list(blobs), binding, where
        self.notes = list(notes or [])  # release-level warnings (e.g. blob files the manifest does not list)
        self.model = self.base
        self.status: OpenStatus | None = None
        self._opened: dict[bytes, tuple[nn.Module | None, OpenStatus]] = {}  # per key, in memory only

    @property
    def base_sha256(self) -> str:
        return self.binding.base_sha256

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def damaged(self) -> dict[int, str]:
        """Blobs that are unusable for any key (read errors, malformed headers, wrong binding)."""
        out = {}
        for i, blob in enumerate(self.blobs):
            if isinstance(blob, Exception):
                out[i] = str(blob)
                continue
            try:
                check_binding(read_header(blob, self._name(i))[0], self.binding, i, self._name(i))
            except BlobDamagedError as err:
                out[i] = str(err)
        return out

    def _name(self, i: int) -> str:
        return f"{self.where} blob {i}"

    def try_open(self, key: UserKey) -> tuple[nn.Module | None, OpenStatus]:
        """(personal policy or None, status): never raises for a damaged blob or a wrong key."""
        if key.raw in self._opened:
            return self._opened[key.raw]
        damaged, warnings = self.damaged(), list(self.notes)  # every damaged blob is reported, not just earlier ones
        for i, blob in enumerate(self.blobs):
            if i in damaged:
                continue
            try:
                parts, _, header = unseal(blob, key, self.binding, i, self._name(i))
                model = apply_parts(self.base, parts, self._name(i), self.base_meta)
            except SealedKeyError:
                continue
            except BlobDamagedError as err:
                damaged[i] = str(err)
                continue
            if header["n_blobs"] != self.binding.n_blobs:  # authenticated: the release lost or gained blobs
                warnings.append(f"{self._name(i)} was sealed into a release of {header['n_blobs']} blobs, this one "
                                f"lists {self.binding.n_blobs}: blobs were removed or added after release")
            status = OpenStatus(True, self.binding.release_id, slot=i, damaged=damaged, warnings=warnings)
            self._opened[key.raw] = (model, status)
            return model, status
        reason = NOT_OPENED
        if damaged:
            reason += (f"; blob {', '.join(map(str, damaged))} damaged ({next(iter(damaged.values()))}): "
                       f"it may have been this key's")
        status = OpenStatus(False, self.binding.release_id, reason=reason, damaged=damaged, warnings=warnings)
        self._opened[key.raw] = (None, status)
        return None, status

    def open(self, key: UserKey) -> nn.Module:
        """The personal policy of `key`; `SealedKeyError` (saying why) if no blob opens with it."""
        model, status = self.try_open(key)
        if model is None:
            raise SealedKeyError(f"{key!r}: {status.reason} ({len(self.blobs)} sealed parts in {self.where})")
        return model

    def set_key(self, key: UserKey | torch.Tensor | None, strict: bool = False) -> bool:
        """Select the policy for `key` (a UserKey or its 0/1 bits; None: the base). True if a blob opened."""
        if key is None:
            self.model, self.status = self.base, None
            return False
        if not isinstance(key, UserKey):
            key = UserKey.from_bits(torch.as_tensor(key))
        model, self.status = self.try_open(key)
        if model is None and strict:
            raise SealedKeyError(f"{key!r}: {self.status.reason} ({len(self.blobs)} sealed parts in {self.where})")
        chosen = model if model is not None else self.base
        if isinstance(chosen, nn.Module):
            self.model = chosen
        else:  # a steered policy (a steering part) is not an nn.Module: held as a plain attribute
            self._modules.pop("model", None)
            object.__setattr__(self, "model", chosen)
        return model is not None
