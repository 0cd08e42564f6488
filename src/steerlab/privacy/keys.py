"""User keys: random secrets (at least 128 bits) from `secrets`, stored in key files.

A key file is versioned JSON written with mode 0600 (temp file + rename). It holds the key in clear, or
(`keygen --passphrase`) encrypted: AES-256-GCM under scrypt(passphrase, random salt, N = 2^17), so a
stolen file is worth a passphrase guess per ~0.1 GiB of scrypt work, not the key. (Version 1 derived the
key *from* the passphrase and stored it in clear beside the salt: the passphrase added nothing.)
`UserKey` never prints its bits: its repr shows a short fingerprint (first 8 hex digits of SHA-256 over
the key), which is safe to log.

Loading refuses keys under 128 bits (a 8-bit key fell to brute force in 72 tries), key files owned by
another user, key files group or others may read or write, and key files in a folder group or others
may write (unless it has the sticky bit, like /tmp): whoever can write there can swap the key.

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
KEY_FILE_VERSION = 2
READABLE_VERSIONS = (1, 2)  # v1 files hold a plain key (v1's "passphrase" keys too: their key was in clear)
DEFAULT_BITS = 128
MIN_BITS = 128
"""Shorter keys are refused everywhere a user key enters (keygen, key files, personalize)."""
SCRYPT_PARAMS = {"n": 2**17, "r": 8, "p": 1}
"""scrypt cost for passphrase-protected key files (N = 2^17: 128 MiB, ~0.3 s per guess on one core)."""
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


def check_key_bits(bits: int, where: str = "a user key") -> None:
    if bits % 8 or bits < MIN_BITS:
        raise KeyFormatError(f"{where} has {bits} bits; user keys need a multiple of 8 bits, at least {MIN_BITS} "
                             f"(shorter keys are brute-forced): create one with `steerlab keygen`")


def generate_key(bits: int = DEFAULT_BITS) -> UserKey:
    check_key_bits(bits, "the requested key")
    return UserKey(secrets.token_bytes(bits // 8))


def derive_key(passphrase: str, salt: bytes, bits: int = DEFAULT_BITS, params: dict | None = None) -> UserKey:
    """scrypt(passphrase, salt) -> secret bytes (what encrypts a protected key file's key). Same passphrase
    + salt -> same bytes."""
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


def _wrap_aad(doc: dict) -> bytes:
    """What the passphrase encryption authenticates besides the key: the file's format, size and KDF."""
    return json.dumps({k: doc[k] for k in ("format", "version", "bits", "kdf")}, sort_keys=True).encode()


def save_key_file(path: str | Path, key: UserKey, user: str | None = None, passphrase: str | None = None) -> Path:
    """Write a key file with mode 0600, atomically; refuses to overwrite an existing key file. With a
    passphrase the key is stored encrypted (AES-256-GCM under scrypt(passphrase, fresh salt))."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    path = Path(path)
    if path.exists() or path.is_symlink():
        raise KeyExistsError(f"{path} already exists; refusing to overwrite a key file (the old key would be "
                             f"lost): choose another --out")
    check_key_bits(key.n_bits)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": KEY_FILE_FORMAT, "version": KEY_FILE_VERSION, "bits": key.n_bits, "kdf": None, "user": user,
           "fingerprint": key.fingerprint()}
    if passphrase is None:
        doc["key_hex"] = key.raw.hex()
    else:
        salt, nonce = new_salt(), secrets.token_bytes(12)
        doc["kdf"] = {"name": "scrypt", "salt_hex": salt.hex(), **SCRYPT_PARAMS, "aead": "AES-256-GCM",
                      "nonce_hex": nonce.hex()}
        wrap = derive_key(passphrase, salt, 256, SCRYPT_PARAMS).raw
        doc["encrypted_key_hex"] = AESGCM(wrap).encrypt(nonce, key.raw, _wrap_aad(doc)).hex()
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
    """Refuse, as ssh does with private keys, a key file that another user owns, that group or others may
    read or write, or that lies in a folder group or others may write (without the sticky bit: they could
    replace the file). `allow_insecure` turns the refusal into a warning on stderr."""
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    parent = path.resolve().parent
    pst = parent.stat()
    problems = []
    if st.st_uid not in (os.getuid(), 0):
        problems.append(f"it is owned by another user (uid {st.st_uid}); `chown` it to yourself")
    if mode & 0o077:
        problems.append(f"it is accessible by others (mode {mode:04o}); run `chmod 600 {path}`")
    if stat.S_IMODE(pst.st_mode) & 0o022 and not pst.st_mode & stat.S_ISVTX:
        problems.append(f"its folder {parent} is writable by others (mode {stat.S_IMODE(pst.st_mode):04o}); run "
                        f"`chmod go-w {parent}` or move the key")
    if not problems:
        return
    msg = f"key file {path}: {'; '.join(problems)}{'' if allow_insecure else ' (or pass --allow-insecure)'}"
    if not allow_insecure:
        raise InsecureKeyFileError(msg)
    print(f"warning: {msg}", file=sys.stderr)


def load_key_file(path: str | Path, allow_insecure: bool = False, passphrase=None) -> UserKey:
    """The key of a key file. `passphrase`: the passphrase of a protected file, or a callable (given the
    path) asked for it only if the file is protected (the CLI's prompt)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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
    if doc.get("version") not in READABLE_VERSIONS:
        raise KeyFormatError(f"{path}: unsupported key file version {doc.get('version')!r}")
    protected = "encrypted_key_hex" in doc
    try:
        raw = bytes.fromhex(doc["encrypted_key_hex" if protected else "key_hex"])
    except (KeyError, TypeError, ValueError):
        field = "encrypted_key_hex" if protected else "key_hex"
        raise KeyFormatError(f"{path}: {field!r} is missing or not hexadecimal") from None  # no echo of the value
    if protected:
        kdf = doc.get("kdf")
        try:
            salt, nonce = bytes.fromhex(kdf["salt_hex"]), bytes.fromhex(kdf["nonce_hex"])
            params = {k: int(kdf[k]) for k in ("n", "r", "p")}
        except (KeyError, TypeError, ValueError):
            raise KeyFormatError(f"{path}: its 'kdf' block is malformed") from None
        if params["n"] < SCRYPT_PARAMS["n"]:
            raise KeyFormatError(f"{path}: scrypt N = {params['n']} is below {SCRYPT_PARAMS['n']}: re-create the key")
        phrase = passphrase(path) if callable(passphrase) else passphrase
        if phrase is None:
            raise KeyFormatError(f"{path} is protected by a passphrase: give it (standard input or the prompt)")
        try:
            raw = AESGCM(derive_key(phrase, salt, 256, params).raw).decrypt(nonce, raw, _wrap_aad(doc))
        except (InvalidTag, KeyFormatError):
            raise KeyFormatError(f"{path}: wrong passphrase (or the key file was altered)") from None
    if 8 * len(raw) != doc.get("bits"):
        raise KeyFormatError(f"{path}: key length {8 * len(raw)} bits does not match 'bits' = {doc.get('bits')}")
    check_key_bits(8 * len(raw), f"key file {path}")
    return UserKey(raw)


def check_distinct(keys: list[UserKey], names: list | None = None) -> None:
    """Two users with one key: the second user's blob could never be told apart (unreachable)."""
    names = names or [f"key #{i + 1}" for i in range(len(keys))]
    seen: dict[bytes, object] = {}
    for name, k in zip(names, keys):
        if k.raw in seen:
            raise KeyFormatError(f"{seen[k.raw]} and {name} hold the same key: give every user their own key "
                                 f"(`steerlab keygen`)")
        seen[k.raw] = name


def load_key_files(paths: list, allow_insecure: bool = False, passphrase=None) -> list[UserKey]:
    """Several users' key files: distinct keys of one length (one keyed model, one key size)."""
    keys = [load_key_file(p, allow_insecure, passphrase) for p in paths]
    sizes = {k.n_bits for k in keys}
    if len(sizes) > 1:
        detail = ", ".join(f"{p}: {k.n_bits} bits" for p, k in zip(paths, keys))
        raise KeyFormatError(f"the key files have different lengths ({detail}); all users of one model need "
                             f"keys of the same size")
    check_distinct(keys, [str(p) for p in paths])
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
