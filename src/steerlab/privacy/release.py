"""What `steerlab personalize` writes, and how the one checkpoint loader reads it back.

Keyed release (PRoP and its variants, key-MLP), `policy_type` "keyed":

    <out>/config.json            method, keyed layers, gate mode, key size, how to rebuild the task
    <out>/model.safetensors      the keyed model (its weights and the key encoders)
    <out>/public_base/           the public base checkpoint (a byte copy of the user's --base checkpoint)

Sealed release, `policy_type` "sealed":

    <out>/config.json            the base's own config (under "base"), the base's tensor hash, the method
    <out>/model.safetensors      the public base's weights, bit for bit
    <out>/sealed/user<i>.sealed  one AEAD blob per user (steerlab.privacy.sealed); nothing else is personal

`load_policy(folder, key=...)` (steerlab.core.checkpoint) returns the policy to run: the key's personal
policy, or without a key the release's no-key policy (keyed: the keyed model with no key; sealed: the
public base). A key that opens no sealed blob prints one line and gives the base. Keys are never written.
"""

from __future__ import annotations

import copy
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
)
from steerlab.core.io import atomic_write_json
from steerlab.privacy.keys import UserKey

BASE_DIR = "public_base"
SEALED_DIR = "sealed"


# ----------------------------------------------------------------------------- tasks from a config
def task_from_config(spec: dict):
    """Rebuild the task a release was trained for: a built-in recipe, or the user's policy + datasets."""
    if "recipe" in spec:
        from steerlab.privacy.tasks import make_task

        return make_task(spec["recipe"], **spec.get("kwargs", {}))
    from steerlab.data.dataset import read_dataset
    from steerlab.privacy.byo import DatasetTask

    d = spec["datasets"]
    return DatasetTask(load_policy(d["base"]), read_dataset(d["general"]), [read_dataset(p) for p in d["personal"]],
                       **d.get("options", {}))


def load_public_base(meta: dict, tensors: dict, folder: Path, key=None):
    """A recipe's public base (`policy_type` "public_base"): the recipe's model with these weights."""
    if key is not None:
        raise CheckpointError(f"{folder} is a public base: it takes no key")
    from steerlab.privacy.tasks import make_task

    cfg = meta["config"]
    model = make_task(cfg["task"], **cfg.get("kwargs", {"n_users": cfg.get("n_users", 1)})).make_model()
    load_state_strict(model, tensors, str(folder))
    return model.eval()


# ----------------------------------------------------------------------------- saving
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
    from steerlab.privacy.sealed import state_sha256

    if personalized.kind in ("prop", "key_mlp"):
        model = personalized.model
        model.set_key(None)
        base_meta = _write_base(out / BASE_DIR, base, base_ckpt, config["task"])
        cfg = {**config, "base": base_meta, "layers": model.layer_names, "mode": model.mode, "key_bits": model.key_bits,
               "key_hash": model.key_hash, "sharpness": next(iter(model.keyed.values())).encoder.sharpness
               if model.mode != "concat" else 1.0}
        save_checkpoint(out, "keyed", cfg, model.state_dict())
    elif personalized.kind == "sealed":
        release = personalized.model
        staging = out / ".base.tmp"
        base_meta = _write_base(staging, base, base_ckpt, config["task"])
        staging.joinpath(WEIGHTS_NAME).replace(out / WEIGHTS_NAME)  # the base's weights, bit for bit
        shutil.rmtree(staging)
        (out / SEALED_DIR).mkdir(exist_ok=True)
        for i, blob in enumerate(release.blobs):
            tmp = out / SEALED_DIR / f".user{i}.sealed.tmp"
            tmp.write_bytes(blob)
            tmp.replace(out / SEALED_DIR / f"user{i}.sealed")
        if release.base_sha256 != state_sha256(base.state_dict()):
            raise CheckpointError("the sealed parts were trained against another base")
        # config.json last: a folder with a config is complete
        atomic_write_json(out / CONFIG_NAME, {"policy_type": "sealed", "config": {
            **config, "base": base_meta, "base_sha256": release.base_sha256, "n_blobs": len(release.blobs)},
            "versions": base_meta.get("versions", {})})
    else:
        raise CheckpointError(f"method kind {personalized.kind!r} has no release format (comparison baselines "
                              f"are evaluated, not saved)")


# ----------------------------------------------------------------------------- loading
def _base_of(meta: dict, tensors: dict, folder: Path):
    """The public base inside a sealed release: its own config (recorded under "base") + the release's weights."""
    return build_policy(meta["config"]["base"], tensors, folder)


def open_sealed(folder: str | Path):
    """The `SealedRelease` of a sealed folder (the base + its blobs) and its config."""
    from steerlab.privacy.sealed import SealedRelease, state_sha256

    folder = Path(folder)
    meta, tensors = read_checkpoint(folder)
    if meta["policy_type"] != "sealed":
        raise CheckpointError(f"{folder} is not a sealed release (policy_type {meta['policy_type']!r})")
    if state_sha256(tensors) != meta["config"]["base_sha256"]:
        raise CheckpointError(f"{folder}: the base weights do not match the hash the sealed parts are bound to")
    blobs = [p.read_bytes() for p in sorted((folder / SEALED_DIR).glob("user*.sealed"))]
    if len(blobs) != meta["config"].get("n_blobs", len(blobs)):
        raise CheckpointError(f"{folder}: {len(blobs)} sealed parts, the config names {meta['config']['n_blobs']}")
    return SealedRelease(_base_of(meta, tensors, folder), blobs, meta["config"]["base_sha256"], str(folder)), meta


def load_sealed_policy(meta: dict, tensors: dict, folder: Path, key: UserKey | None = None):
    release, _ = open_sealed(folder)
    if key is None:
        return release.base
    if not release.set_key(key):
        print(f"steerlab: {key!r} opens none of the sealed parts of {folder} (authentication failed): "
              f"running the public base", file=sys.stderr)
    return release.model


def open_keyed(folder: str | Path):
    """(KeyedModel with no key set, public base, config) of a keyed folder."""
    from steerlab.privacy.keyed import KeyedModel

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
    from steerlab.privacy.evaluate import Personalized

    meta, _ = read_checkpoint(folder)
    task = task_from_config(meta["config"]["task"])
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
    task = task_from_config(meta["config"]["task"])
    task.adopt_base(base)
    return task, model, base
