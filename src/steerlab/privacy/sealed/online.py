"""Private online personalization (PRoP × ZPRL): a user's RL-improved steering, sealed as that user's part.

`steerlab finetune BASE --method zprl --key alice.key --env-kwargs '{"goal_offset": [...]}'` trains as usual
in its run folder — which is then the user's **private report** (mode 0700: config.json with the user's
env/reward options, metrics, training state and the steered policy in clear) — and writes the shareable
output beside it, `<run>.sealed/`: a sealed release (format 2) of one user, i.e. the public base bit for
bit plus one AES-256-GCM blob holding

* the part `steering`: the steering method's SAC actor (tensors) and, as its metadata, everything else the
  steered policy needs that is not the base (steering options, SAC sizes, the sampler noise scale, the
  env spec the user trained in: their goal offset / reward options);
* the payload's personal options: the run's finetune config and its result.json (the user's scores).

`steerlab release --part <run>.sealed alice.key --part <run2>.sealed bob.key ... --out R` assembles several
users' parts (online parts, or sealed releases from `steerlab personalize`) over one public base into one
release: each part is opened with its user's key and re-sealed into the new release (bound to its id,
n_blobs and the user's slot, as `personalize` seals). `steerlab evaluate R --key alice.key` runs alice's
RL-improved steered policy (in alice's own env, recorded inside her blob); no key or a wrong key runs the
public base, bit for bit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from steerlab.core.checkpoint import CONFIG_NAME, WEIGHTS_NAME, read_checkpoint, read_json
from steerlab.core.errors import UserError
from steerlab.privacy.keys import UserKey
from steerlab.privacy.sealed.adapters import BlobDamagedError
from steerlab.privacy.sealed.blobs import (
    Binding,
    SealedKeyError,
    apply_parts,
    config_sha256,
    pack,
    seal,
    state_sha256,
    unseal,
)

STEERING_PART = "steering"
SEALED_SUFFIX = ".sealed"
PUBLIC_CONFIG = {"method": "online", "task": {"private": "the users' env, reward and scores are inside their blobs"}}


def part_dir(run: str | Path) -> Path:
    """Where `finetune --key` writes a run's shareable sealed part: beside the (private) run folder."""
    run = Path(run)
    return run.with_name(run.name + SEALED_SUFFIX)


def steering_part(policy_dir: str | Path) -> tuple[dict, dict, dict]:
    """(actor tensors, part metadata, base config) of a saved steered policy (`<run>/policy`)."""
    meta, tensors = read_checkpoint(policy_dir)
    if meta["policy_type"] != "steered":
        raise UserError(f"{policy_dir} is not a steered policy (policy_type {meta['policy_type']!r})")
    cfg = meta["config"]
    actor = {k[6:]: v for k, v in tensors.items() if k.startswith("actor.")}
    return actor, {k: v for k, v in cfg.items() if k != "base"}, cfg["base"]


def _base_files(base_dir: Path) -> tuple[dict, str, str]:
    """(config.json, weights hash, config hash) of a public base checkpoint folder."""
    if not (base_dir / CONFIG_NAME).is_file() or not (base_dir / WEIGHTS_NAME).is_file():
        raise UserError(f"{base_dir} is not a checkpoint folder (config.json + model.safetensors): a sealed online "
                        f"part copies its public base bit for bit, so --key needs a checkpoint folder as the base")
    meta, tensors = read_checkpoint(base_dir)
    return read_json(base_dir / CONFIG_NAME), state_sha256(tensors), config_sha256(read_json(base_dir / CONFIG_NAME))


def _write_release(out: Path, weights_src: Path, base_meta: dict, blobs: list[bytes], binding: Binding,
                   config: dict) -> None:
    """A sealed release in the prepared folder `out`: a byte copy of `weights_src`, the blobs, config.json."""
    from steerlab.privacy.release import write_sealed

    with tempfile.TemporaryDirectory(dir=out, prefix=".base.") as tmp:
        shutil.copyfile(weights_src, Path(tmp) / WEIGHTS_NAME)
        write_sealed(out, blobs, binding, config, Path(tmp) / WEIGHTS_NAME, base_meta)


def seal_online_run(run: str | Path, key: UserKey, out: str | Path, base: str | Path) -> Path:
    """Seal a finished finetune run's steering (and its personal options and scores) for `key` as a one-user
    sealed release in the prepared folder `out`, bound to the public base checkpoint `base`."""
    run, out, base = Path(run), Path(out), Path(base)
    actor, part_meta, run_base_meta = steering_part(run / "policy")
    base_meta, base_sha, base_cfg_sha = _base_files(base)
    _, run_tensors = read_checkpoint(run / "policy")
    run_base = {k[5:]: v for k, v in run_tensors.items() if k.startswith("base.")}
    if state_sha256(run_base) != base_sha or config_sha256(run_base_meta) != base_cfg_sha:
        raise UserError(f"{run} was not trained on the base {base} (weights or config differ): seal it against the "
                        f"base it was trained on")
    personal = {"finetune": read_json(run / "config.json")}
    if (run / "result.json").is_file():
        personal["result"] = read_json(run / "result.json")
    binding = Binding.new(base_sha, base_cfg_sha, 1)
    blob = seal(pack({STEERING_PART: (actor, part_meta)}, personal), key, binding, 0)
    _write_release(out, base / WEIGHTS_NAME, base_meta, [blob], binding, {**PUBLIC_CONFIG, "n_users": 1})
    return out


def open_part(folder: str | Path, key: UserKey) -> tuple[dict, dict, object]:
    """(parts, personal options, SealedRelease) of the blob `key` opens in the sealed release `folder`; a
    one-line error if none opens (a wrong key, or that user's blob is damaged)."""
    from steerlab.privacy.release import open_sealed

    release, _ = open_sealed(folder)
    errors = []
    for i, blob in enumerate(release.blobs):
        if isinstance(blob, Exception):
            errors.append(str(blob))
            continue
        try:
            parts, personal, _ = unseal(blob, key, release.binding, i, f"{folder} blob {i}")
            apply_parts(release.base, parts, f"{folder} blob {i}", release.base_meta)  # readable and fits
            return parts, personal, release
        except SealedKeyError:
            continue
        except BlobDamagedError as err:
            errors.append(str(err))
    why = f"; damaged: {errors[0]}" if errors else ""
    raise SealedKeyError(f"{key!r} opens no sealed part of {folder}{why}")


def assemble_release(parts: list[tuple[str | Path, UserKey]], out: str | Path) -> Path:
    """One release of several users' sealed parts over one public base, in the prepared folder `out`: each part
    opened with its user's key and re-sealed (slot i = the i-th part). Returns `out`."""
    out = Path(out)
    if not parts:
        raise UserError("pass at least one --part FOLDER KEYFILE")
    opened = [(folder, key, *open_part(folder, key)) for folder, key in parts]
    first = opened[0][4]
    for folder, _, _, _, release in opened[1:]:
        if (release.binding.base_sha256, release.binding.base_config_sha256) != (
                first.binding.base_sha256, first.binding.base_config_sha256):
            raise UserError(f"{folder} is sealed over another public base than {opened[0][0]} (weights or config "
                            f"hash differs): one release holds parts of one base; rebuild the part on that base")
    binding = Binding.new(first.binding.base_sha256, first.binding.base_config_sha256, len(opened))
    blobs = [seal(pack(p, personal), key, binding, i) for i, (_, key, p, personal, _) in enumerate(opened)]
    kinds = sorted({name for _, _, p, _, _ in opened for name in p})
    _write_release(out, Path(opened[0][0]) / WEIGHTS_NAME, first.base_meta, blobs, binding,
                   {**PUBLIC_CONFIG, "method": "release", "parts": kinds, "n_users": len(opened)})
    return out


def make_private(folder: str | Path) -> None:
    """Mode 0700 for a folder that holds a user's personal data (the run folder, a private report)."""
    os.chmod(folder, 0o700)
