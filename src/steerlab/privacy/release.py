"""What `steerlab personalize` writes, and how the one checkpoint loader reads it back.

Keyed release (PRoP and its variants, key-MLP), `policy_type` "keyed":

    <out>/config.json            method, keyed layers, gate mode, key size, how to rebuild the task
    <out>/model.safetensors      the keyed model (its weights and the key encoders)
    <out>/public_base/           the public base checkpoint (a byte copy of the user's --base checkpoint)

Sealed release, `policy_type` "sealed" (format `SEALED_VERSION`):

    <out>/config.json            the base's own config (under "base"), the hashes of the base's tensors and
                                 config, the release id, n_blobs and the manifest (each blob's SHA-256)
    <out>/model.safetensors      the public base's weights, bit for bit
    <out>/sealed/user<i>.sealed  one AEAD blob per user (steerlab.privacy.sealed.blobs); nothing else is personal

Nothing personal is written into <out> (of either kind): the users' dataset paths, goal offsets and
per-user scores go into the private report `<out>.private/` beside it (mode 0700: task.json, cases.json,
metrics.jsonl), and a sealed blob carries its user's own options inside its ciphertext. A recipe's task
(a public benchmark) stays in the release's config.

`load_policy(folder, key=...)` (steerlab.core.checkpoint) returns the policy to run: the key's personal
policy, or without a key the release's no-key policy (keyed: the keyed model with no key; sealed: the
public base). `load_personal(folder, key, strict=...)` also says whether the key opened a blob, and why
not. Every blob is opened on its own: a damaged one is reported (one line naming it) and skipped. Keys
are never written.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
import sys
from pathlib import Path

import torch

from steerlab.core.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    build_policy,
    load_policy,
    load_state_strict,
    read_checkpoint,
    save_checkpoint,
    versions,
)
from steerlab.core.io import atomic_write_json, read_json
from steerlab.privacy.keys import UserKey

BASE_DIR = "public_base"
SEALED_DIR = "sealed"
PRIVATE_SUFFIX = ".private"
PRIVATE_TASK = {"private": "task.json of the private report <release>.private/ (it names the users' data)"}


def private_dir(out: str | Path) -> Path:
    """Where `personalize` writes what is personal (scores, datasets, goals): beside the release, never in it."""
    out = Path(out)
    return out.with_name(out.name + PRIVATE_SUFFIX)


def public_task(spec: dict) -> dict:
    """The task as a release may record it: a recipe (public), or a pointer to the private report."""
    return spec if "recipe" in spec else PRIVATE_TASK


# ----------------------------------------------------------------------------- tasks from a config
def task_from_config(spec: dict, folder: str | Path | None = None):
    """Rebuild the task a release was trained for: a built-in recipe, or the user's policy + datasets (read
    from the release's private report when the release records only a pointer to it)."""
    if "private" in spec:
        path = private_dir(folder) / "task.json"
        if not path.is_file():
            raise CheckpointError(f"{folder} records its task in the private report {path}, which is missing: it "
                                  f"is only on the machine that ran `steerlab personalize`")
        spec = read_json(path)
    if "recipe" in spec:
        from steerlab.privacy.tasks.registry import make_task

        return make_task(spec["recipe"], **spec.get("kwargs", {}))
    from steerlab.data.dataset import read_dataset
    from steerlab.privacy.tasks.byo import DatasetTask

    d = spec["datasets"]
    return DatasetTask(load_policy(d["base"]), read_dataset(d["general"]), [read_dataset(p) for p in d["personal"]],
                       **d.get("options", {}))


def load_public_base(meta: dict, tensors: dict, folder: Path, key=None):
    """A recipe's public base (`policy_type` "public_base"): the recipe's model with these weights."""
    if key is not None:
        raise CheckpointError(f"{folder} is a public base: it takes no key")
    from steerlab.privacy.tasks.registry import make_task

    cfg = meta["config"]
    model = make_task(cfg["task"], **cfg.get("kwargs", {"n_users": cfg.get("n_users", 1)})).make_model()
    load_state_strict(model, tensors, str(folder))
    return model.eval()


# ----------------------------------------------------------------------------- saving
def base_config_of(base_ckpt: str | Path | None, recipe: dict | None) -> dict:
    """The base's config.json exactly as the release will record it (its hash is bound into the blobs)."""
    if base_ckpt is not None:
        return read_json(Path(base_ckpt) / CONFIG_NAME)
    return {"policy_type": "public_base", "config": {"task": recipe["recipe"], "kwargs": recipe.get("kwargs", {})},
            "versions": versions()}


def _write_base(folder: Path, base: torch.nn.Module, base_ckpt: str | Path | None, recipe: dict | None) -> dict:
    """The public base under `folder` (byte copies of the user's checkpoint files); returns its config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    if base_ckpt is not None:
        for name in (WEIGHTS_NAME, CONFIG_NAME):
            tmp = folder / f".{name}.tmp"
            shutil.copyfile(Path(base_ckpt) / name, tmp)
            tmp.replace(folder / name)
    else:
        save_checkpoint(folder, "public_base", {"task": recipe["recipe"], "kwargs": recipe.get("kwargs", {})},
                        base.state_dict())
    return read_checkpoint(folder)[0]


def save_release(out: Path, personalized, config: dict, base: torch.nn.Module,
                 base_ckpt: str | Path | None) -> None:
    """Write a keyed or sealed release of `personalized` into the (prepared, locked) folder `out`."""
    from steerlab.privacy.sealed.blobs import state_sha256

    if personalized.kind in ("prop", "key_mlp"):
        model = personalized.model
        model.set_key(None)
        base_meta = _write_base(out / BASE_DIR, base, base_ckpt, config["task"])
        cfg = {**config, "task": public_task(config["task"]), "base": base_meta, "layers": model.layer_names, "mode": model.mode, "key_bits": model.key_bits,
               "key_hash": model.key_hash, "sharpness": next(iter(model.keyed.values())).encoder.sharpness
               if model.mode != "concat" else 1.0}
        save_checkpoint(out, "keyed", cfg, model.state_dict())
    elif personalized.kind == "sealed":
        release = personalized.model
        staging = out / ".base.tmp"
        base_meta = _write_base(staging, base, base_ckpt, config["task"])
        if release.binding.base_sha256 != state_sha256(base.state_dict()):
            raise CheckpointError("the sealed parts were trained against another base")
        write_sealed(out, release.blobs, release.binding, {**config, "task": public_task(config["task"])},
                     staging / WEIGHTS_NAME, base_meta)
        shutil.rmtree(staging)
    else:
        raise CheckpointError(f"method kind {personalized.kind!r} has no release format (comparison baselines "
                              f"are evaluated, not saved)")


def write_sealed(out: Path, blobs: list[bytes], binding, config: dict, weights: Path, base_meta: dict) -> None:
    """A sealed release (format `SEALED_VERSION`) in the prepared folder `out`: the base's weights file `weights`
    moved in (a byte copy of the public base), one file per blob, and config.json (the base's config under
    "base", the binding, the manifest) last. `config` holds nothing personal."""
    from steerlab.privacy.sealed.blobs import SEALED_VERSION, config_sha256

    if binding.base_config_sha256 != config_sha256(base_meta):
        raise CheckpointError("the sealed parts are bound to another base config than the one released")
    Path(weights).replace(out / WEIGHTS_NAME)  # the base's weights, bit for bit
    (out / SEALED_DIR).mkdir(exist_ok=True)
    manifest = []
    for i, blob in enumerate(blobs):
        tmp = out / SEALED_DIR / f".user{i}.sealed.tmp"
        tmp.write_bytes(blob)
        tmp.replace(out / SEALED_DIR / f"user{i}.sealed")
        manifest.append({"slot": i, "file": f"{SEALED_DIR}/user{i}.sealed", "sha256": hashlib.sha256(blob).hexdigest()})
    # config.json last: a folder with a config is complete
    atomic_write_json(out / CONFIG_NAME, {"policy_type": "sealed", "config": {
        **config, "base": base_meta, "sealed_version": SEALED_VERSION, **binding.fields(), "manifest": manifest},
        "versions": base_meta.get("versions", {})})


# ----------------------------------------------------------------------------- loading
def _base_of(meta: dict, tensors: dict, folder: Path):
    """The public base inside a sealed release: its own config (recorded under "base") + the release's weights."""
    return build_policy(meta["config"]["base"], tensors, folder)


def _binding_of(cfg: dict, folder: Path):
    from steerlab.privacy.sealed.blobs import SEALED_VERSION, Binding

    if cfg.get("sealed_version") != SEALED_VERSION:
        raise CheckpointError(f"{folder} is a sealed release of format {cfg.get('sealed_version', 1)!r}; this steerlab "
                              f"reads format {SEALED_VERSION}: re-run `steerlab personalize` to rebuild it")
    try:
        binding = Binding(str(cfg["base_sha256"]), str(cfg["base_config_sha256"]), str(cfg["release_id"]),
                          int(cfg["n_blobs"]))
        files = {int(e["slot"]): (str(e["file"]), str(e["sha256"])) for e in cfg["manifest"]}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CheckpointError(f"{folder}/config.json: malformed sealed-release fields (binding or manifest)") from None
    if sorted(files) != list(range(binding.n_blobs)):
        raise CheckpointError(f"{folder}/config.json: the manifest lists slots {sorted(files)}, n_blobs is "
                              f"{binding.n_blobs}")
    return binding, files


def _read_blob(folder: Path, slot: int, name: str, sha: str):
    """Slot `slot`'s bytes, or the `BlobDamagedError` saying why it cannot be used (that blob only)."""
    from steerlab.privacy.sealed.blobs import BlobDamagedError

    path = folder / name
    where = f"{folder} blob {slot} ({name})"
    if not path.resolve().is_relative_to(folder.resolve()):
        return BlobDamagedError(f"{where}: the manifest points outside the release")
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return BlobDamagedError(f"{where} is missing (deleted?)")
    except OSError as err:
        return BlobDamagedError(f"{where} is unreadable ({err.strerror or type(err).__name__})")
    if hashlib.sha256(blob).hexdigest() != sha:
        return BlobDamagedError(f"{where} differs from the release manifest (damaged, altered or replaced)")
    return blob


def open_sealed(folder: str | Path):
    """The `SealedRelease` of a sealed folder (the base + its blobs, damaged ones as errors) and its config."""
    from steerlab.privacy.sealed.blobs import SealedRelease, config_sha256, state_sha256

    folder = Path(folder)
    meta, tensors = read_checkpoint(folder)
    if meta["policy_type"] != "sealed":
        raise CheckpointError(f"{folder} is not a sealed release (policy_type {meta['policy_type']!r})")
    cfg = meta["config"]
    binding, files = _binding_of(cfg, folder)
    if state_sha256(tensors) != binding.base_sha256:
        raise CheckpointError(f"{folder}: the base weights do not match the hash the sealed parts are bound to")
    if config_sha256(cfg.get("base")) != binding.base_config_sha256:
        raise CheckpointError(f"{folder}: the base's config (config.json, under 'base') does not match the hash the "
                              f"sealed parts are bound to: it was edited")
    blobs = [_read_blob(folder, i, *files[i]) for i in range(binding.n_blobs)]
    listed = {Path(f).name for f, _ in files.values()}
    extra = sorted(p.name for p in (folder / SEALED_DIR).glob("*.sealed") if p.name not in listed) \
        if (folder / SEALED_DIR).is_dir() else []
    notes = [f"{folder}: {', '.join(extra)} not in the release manifest: ignored"] if extra else []
    return SealedRelease(_base_of(meta, tensors, folder), blobs, binding, str(folder), notes=notes,
                         base_meta=cfg.get("base")), meta


def load_personal(folder: str | Path, key: UserKey | None, strict: bool = False, log=None):
    """(policy, status) of a keyed or sealed release for `key`. `status` (JSON) records `personal_opened`
    and, if false, why: no blob opened with this key, or blob N damaged. Damaged blobs and release
    warnings are printed one line each to `log` (stderr); `strict=True` raises `SealedKeyError` when a
    key opens nothing instead of running the base."""
    from steerlab.privacy.sealed.blobs import SealedKeyError

    log = log or sys.stderr
    folder = Path(folder)
    meta, _ = read_checkpoint(folder)
    if meta["policy_type"] == "keyed":
        model, _, _ = open_keyed(folder)
        model.set_key(key)
        return model.model, {"personal_opened": None, "personal_reason": "keyed (unsealed) release: every key runs "
                             "some policy; whether it is this user's cannot be checked", "release": "keyed"}
    release, _ = open_sealed(folder)
    if key is None:
        return release.base, {"personal_opened": False, "personal_reason": "no key given", "release": "sealed"}
    model, status = release.try_open(key)
    for slot, why in (status.damaged or {}).items():
        print(f"steerlab: warning: skipping damaged blob {slot}: {why}", file=log)
    for note in status.warnings or []:
        print(f"steerlab: warning: {note}", file=log)
    if model is None:
        if strict:
            raise SealedKeyError(f"{key!r}: {status.reason} ({folder}; --strict: not running the base)")
        print(f"steerlab: {key!r}: {status.reason}: running the public base", file=log)
    return (model if model is not None else release.base), {**status.to_json(), "release": "sealed"}


def load_sealed_policy(meta: dict, tensors: dict, folder: Path, key: UserKey | None = None):
    if key is None:
        return open_sealed(folder)[0].base
    return load_personal(folder, key)[0]


def open_keyed(folder: str | Path):
    """(KeyedModel with no key set, public base, config) of a keyed folder."""
    from steerlab.privacy.prop.keyed import KeyedModel

    folder = Path(folder)
    meta, tensors = read_checkpoint(folder)
    if meta["policy_type"] == "sealed":
        raise CheckpointError(f"{folder} is a sealed release: without a key it holds only the public base and "
                              f"encrypted blobs, so there is no keyed model to attack (docs/privacy.md)")
    if meta["policy_type"] != "keyed":
        raise CheckpointError(f"{folder} is not a keyed model (policy_type {meta['policy_type']!r})")
    cfg = meta["config"]
    base = load_policy(folder / BASE_DIR)
    try:
        model = KeyedModel(copy.deepcopy(base), cfg["layers"], cfg["key_bits"], cfg["mode"], key_hash=cfg["key_hash"],
                           sharpness=cfg["sharpness"])
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{folder}: invalid keyed config ({err})") from None
    load_state_strict(model, tensors, str(folder))
    return model.eval(), base, meta


def load_keyed_policy(meta: dict, tensors: dict, folder: Path, key: UserKey | None = None):
    model, _, _ = open_keyed(folder)
    model.set_key(key)  # δ folded once: a keyed forward pass costs a plain one
    return model.model


def load_release(folder: str | Path):
    """(task, Personalized view, public base) of a keyed or sealed release, for evaluation and attacks."""
    from steerlab.privacy.key_cases import Personalized

    meta, _ = read_checkpoint(folder)
    task = task_from_config(meta["config"]["task"], folder)
    if meta["policy_type"] == "sealed":
        release, _ = open_sealed(folder)
        task.adopt_base(release.base)
        return task, Personalized("sealed", release, [], predict=task.predict), release.base
    task, model, base = load_keyed(folder)
    kind = "key_mlp" if meta["config"]["mode"] == "concat" else "prop"
    return task, Personalized(kind, model, [], predict=task.predict), base


def load_keyed(folder: str | Path):
    """(task, keyed model, public base) of a keyed release written by `steerlab personalize`."""
    model, base, meta = open_keyed(folder)
    task = task_from_config(meta["config"]["task"], folder)
    task.adopt_base(base)
    return task, model, base
