"""User keys: 128-bit secrets from `secrets`, or derived from a passphrase with scrypt and a random salt.

A key file is versioned JSON written with mode 0600 (temp file + rename). It holds the key and, for a
derived key, the KDF parameters and salt, never the passphrase. `UserKey` never prints its bits:
its repr shows a short fingerprint (first 8 hex digits of SHA-256 over the key), which is safe to log.

The *training-time* negative keys (random keys, near-miss keys) are not secrets: they are drawn from a
seeded torch.Generator so runs are reproducible. Only user keys come from the OS CSPRNG.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from steerlab.core.errors import UserError

KEY_FILE_FORMAT = "steerlab-key"
KEY_FILE_VERSION = 1
DEFAULT_BITS = 128
SCRYPT_PARAMS = {"n": 2**14, "r": 8, "p": 1}
MIN_PASSPHRASE_CHARS = 8
"""Passphrases need at least this many non-space characters (scrypt slows guessing; it cannot fix a tiny space)."""


class KeyFormatError(UserError):
    """A key or key file is malformed. Messages never contain key material."""


class KeyExistsError(UserError):
    """`keygen` would replace an existing key file (the old key would be lost: we never do that)."""


class InsecureKeyFileError(UserError):
    """A key file is readable or writable by group or others (like ssh, we refuse to use it)."""


@dataclass(frozen=True, repr=False)
class UserKey:
    raw: bytes

    def __post_init__(self):
        if not isinstance(self.raw, bytes) or len(self.raw) == 0:
            raise KeyFormatError("a key must be non-empty bytes")

    @property
    def n_bits(self) -> int:
        return 8 * len(self.raw)

    def bits(self) -> torch.Tensor:
        """Key as a float tensor of 0/1 bits, shape (n_bits,), most significant bit first."""
        as_int = int.from_bytes(self.raw, "big")
        return torch.tensor([(as_int >> (self.n_bits - 1 - i)) & 1 for i in range(self.n_bits)], dtype=torch.float32)

    @classmethod
    def from_bits(cls, bits: torch.Tensor) -> UserKey:
        """The key whose `bits()` are `bits` (0/1, most significant first, a multiple of 8 of them)."""
        b = torch.as_tensor(bits).flatten()
        if b.numel() == 0 or b.numel() % 8 or not bool(((b == 0) | (b == 1)).all()):
            raise KeyFormatError("key bits must be 0/1 values, a positive multiple of 8 of them")
        value = 0
        for x in b.tolist():
            value = (value << 1) | int(x)
        return cls(value.to_bytes(b.numel() // 8, "big"))

    def fingerprint(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"UserKey({self.n_bits} bits, fingerprint {self.fingerprint()})"

    __str__ = __repr__


def generate_key(bits: int = DEFAULT_BITS) -> UserKey:
    if bits % 8 or bits <= 0:
        raise KeyFormatError(f"key size must be a positive multiple of 8 bits, got {bits}")
    return UserKey(secrets.token_bytes(bits // 8))


def derive_key(passphrase: str, salt: bytes, bits: int = DEFAULT_BITS, params: dict | None = None) -> UserKey:
    """scrypt(passphrase, salt) -> key. Same passphrase + salt -> same key."""
    if bits % 8 or bits <= 0:
        raise KeyFormatError(f"key size must be a positive multiple of 8 bits, got {bits}")
    if not passphrase:
        raise KeyFormatError("the passphrase is empty")
    if len("".join(passphrase.split())) < MIN_PASSPHRASE_CHARS:
        raise KeyFormatError(f"the passphrase is too short: use at least {MIN_PASSPHRASE_CHARS} characters "
                             f"that are not spaces")
    p = dict(SCRYPT_PARAMS, **(params or {}))
    kdf = Scrypt(salt=salt, length=bits // 8, n=p["n"], r=p["r"], p=p["p"])
    return UserKey(kdf.derive(passphrase.encode("utf-8")))


def new_salt() -> bytes:
    return secrets.token_bytes(16)


def save_key_file(path: str | Path, key: UserKey, kdf: dict | None = None, user: str | None = None) -> Path:
    """Write a key file with mode 0600, atomically; refuses to overwrite an existing key file."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise KeyExistsError(f"{path} already exists; refusing to overwrite a key file (the old key would be "
                             f"lost): choose another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": KEY_FILE_FORMAT, "version": KEY_FILE_VERSION, "bits": key.n_bits, "key_hex": key.raw.hex(),
           "kdf": kdf, "user": user, "fingerprint": key.fingerprint()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # created 0600
    try:
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_key_file_mode(path: Path, allow_insecure: bool = False) -> None:
    """Refuse a key file that group or others may read or write, as ssh does with private keys;
    `allow_insecure` turns the refusal into a warning on stderr."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & 0o077:
        return
    msg = (f"key file {path} is accessible by others (mode {mode:04o}); run `chmod 600 {path}`"
           f"{'' if allow_insecure else ' or pass --allow-insecure'}")
    if not allow_insecure:
        raise InsecureKeyFileError(msg)
    print(f"warning: {msg}", file=sys.stderr)


def load_key_file(path: str | Path, allow_insecure: bool = False) -> UserKey:
    path = Path(path)
    if not path.is_file():
        raise KeyFormatError(f"key file {path} does not exist")
    check_key_file_mode(path, allow_insecure)
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KeyFormatError(f"{path} is not a steerlab key file (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != KEY_FILE_FORMAT:
        raise KeyFormatError(f"{path} is not a steerlab key file (format field missing or wrong)")
    if doc.get("version") != KEY_FILE_VERSION:
        raise KeyFormatError(f"{path}: unsupported key file version {doc.get('version')!r}")
    try:
        raw = bytes.fromhex(doc["key_hex"])
    except (KeyError, TypeError, ValueError):
        raise KeyFormatError(f"{path}: 'key_hex' is missing or not hexadecimal") from None  # no echo of the value
    if 8 * len(raw) != doc.get("bits"):
        raise KeyFormatError(f"{path}: key length {8 * len(raw)} bits does not match 'bits' = {doc.get('bits')}")
    return UserKey(raw)


def load_key_files(paths: list, allow_insecure: bool = False) -> list[UserKey]:
    """Several users' key files; they must all have the same length (one keyed model, one key size)."""
    keys = [load_key_file(p, allow_insecure) for p in paths]
    sizes = {k.n_bits for k in keys}
    if len(sizes) > 1:
        detail = ", ".join(f"{p}: {k.n_bits} bits" for p, k in zip(paths, keys))
        raise KeyFormatError(f"the key files have different lengths ({detail}); all users of one model need "
                             f"keys of the same size")
    return keys


def random_keys(n: int, bits: int, generator: torch.Generator) -> torch.Tensor:
    """`n` uniformly random bit vectors (training negatives; not secrets)."""
    return torch.randint(0, 2, (n, bits), generator=generator).float()


def near_miss_keys(key_bits: torch.Tensor, n: int, max_flips: int, generator: torch.Generator,
                   min_flips: int = 1) -> torch.Tensor:
    """`n` copies of `key_bits` with between min_flips and max_flips distinct bits flipped."""
    bits = key_bits.numel()
    out = key_bits.repeat(n, 1)
    flips = torch.randint(min_flips, max_flips + 1, (n,), generator=generator)
    for i in range(n):
        idx = torch.randperm(bits, generator=generator)[: int(flips[i])]
        out[i, idx] = 1.0 - out[i, idx]
    return out


def flip_bits(key_bits: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """One copy of the key with exactly `k` distinct bits flipped."""
    return near_miss_keys(key_bits, 1, k, generator, min_flips=k)[0]
