"""Resumable training state of an online-RL run: snapshot folders verified by a manifest, and the run record
a resume must match.

A snapshot is taken only when every env is between episodes, so no simulator state is needed: the SAC learner,
the replay buffer and the loop's counters and RNG streams are the whole state. Each snapshot is one folder
switched in with one rename; every part records the env step it belongs to, and the manifest the digest of
every file, so a resume can prove the set is one complete snapshot.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from steerlab.core.checkpoint import CONFIG_NAME, WEIGHTS_NAME, atomic_write_json, read_json
from steerlab.core.errors import CheckpointError, UserError
from steerlab.core.io import atomic_dir, recover_dir
from steerlab.policies.factory import is_factory_ref
from steerlab.train.finetune.config import ABSENT_MEANS, RESUME_FREE

STATE_DIR = "training_state"
MANIFEST = "manifest.json"
STATE_FORMAT = 2


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def base_digest(base: str | Path, meta: dict, tensors: dict[str, torch.Tensor]) -> str:
    """Content hash of the base: a checkpoint's config + weights files ('the same base' regardless of its
    path), or for `module:factory` its reference and the weights it built."""
    if not is_factory_ref(str(base)):
        return hashlib.sha256((file_digest(Path(base) / CONFIG_NAME) + file_digest(Path(base) / WEIGHTS_NAME))
                              .encode()).hexdigest()
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].contiguous().numpy().tobytes())
    return h.hexdigest()


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in ("sac", "steering"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def save_state(tuner) -> None:
    """One snapshot folder, switched in with one rename: every part, then a manifest naming them all.

    Each part also records the env step it belongs to, so a resume can prove the set is one snapshot.
    """
    tag = {"env_steps": tuner.env_steps}
    with atomic_dir(tuner.out / STATE_DIR, replace=True) as tmp:  # the run's own previous snapshot
        tuner.sac.save(tmp / "sac", tag=tag)
        tuner.replay.save(tmp / "replay.npz", tag=tag)
        atomic_write_json(tmp / "loop.json", {
            "env_steps": tuner.env_steps, "decisions": tuner.decisions, "episodes": tuner.episodes,
            "next_eval": tuner.next_eval, "next_ckpt": tuner.next_ckpt, "window": tuner.window,
            "last_update": tuner.last_update, "update_credit": tuner.update_credit,
            "noise_gen": tuner.noise_gen.get_state().tolist(), "rng": tuner.rng.bit_generator.state,
        })
        parts = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        atomic_write_json(tmp / MANIFEST, {"format": STATE_FORMAT, "env_steps": tuner.env_steps,
                                           "files": {name: file_digest(tmp / name) for name in parts}})


def verified_state(tuner) -> Path | None:
    """The snapshot folder if there is one, after checking it is complete and of one step."""
    state = recover_dir(tuner.out / STATE_DIR)  # a crash mid-switch leaves the previous snapshot as .old
    if state is None:
        return None
    where = f"{state}"
    if not (state / MANIFEST).is_file():
        raise CheckpointError(f"{where} has no {MANIFEST}: it is not a complete snapshot; move it aside to "
                              f"restart this run from step 0")
    manifest = read_json(state / MANIFEST)
    files = manifest.get("files", {})
    present = sorted(p.relative_to(state).as_posix() for p in state.rglob("*")
                     if p.is_file() and p.name != MANIFEST)
    if sorted(files) != present:
        raise CheckpointError(f"{where} is a mixed snapshot: files {present} differ from its manifest's "
                              f"{sorted(files)}; refusing to resume")
    for name, digest in files.items():
        if file_digest(state / name) != digest:
            raise CheckpointError(f"{where}/{name} does not match its manifest (changed after the snapshot); "
                                  f"refusing to resume")
    return state


def load_state(tuner) -> bool:
    state = verified_state(tuner)
    if state is None:
        return False
    manifest = read_json(state / MANIFEST)
    loop = read_json(state / "loop.json")
    steps = {"manifest": manifest.get("env_steps"), "loop.json": loop.get("env_steps"),
             "sac": tuner.sac.load(state / "sac").get("env_steps"),
             "replay.npz": tuner.replay.load(state / "replay.npz").get("env_steps")}
    if len(set(steps.values())) != 1:
        raise CheckpointError(f"{state} mixes parts of different steps ({steps}); refusing to resume")
    for key in ("env_steps", "decisions", "episodes", "next_eval", "next_ckpt", "window", "last_update",
                "update_credit"):
        setattr(tuner, key, loop[key])
    tuner.started = tuner.episodes  # snapshots are taken with every env between episodes
    tuner.noise_gen.set_state(torch.tensor(loop["noise_gen"], dtype=torch.uint8))
    tuner.rng.bit_generator.state = loop["rng"]
    return True


def run_record(tuner) -> dict:
    return {"finetune": tuner.cfg.to_dict(), "steering": tuner.adapter.config_dict(), "sampler_mode": tuner.sampler_mode,
            "env": tuner.env_spec.to_dict(),
            "base_config": tuner.base_meta["config"],
            "base_digest": base_digest(tuner.cfg.base, tuner.base_meta, tuner.base_tensors)}


def check_same_run(tuner, recorded: dict) -> None:
    """Refuse to continue a run recorded with other arguments (only a longer env_steps is allowed)."""
    mine = json.loads(json.dumps(run_record(tuner)))
    old, new = _flat(recorded.get("finetune", {})), _flat(mine["finetune"])
    # a field added after the run was recorded reads as its default (what the run computed with)
    old = {**{k: v for k, v in ABSENT_MEANS.items() if k in new}, **old}
    differ = sorted(k for k in set(old) | set(new) if k not in RESUME_FREE and old.get(k) != new.get(k))
    if recorded.get("base_digest", mine["base_digest"]) != mine["base_digest"]:
        differ.insert(0, "base (different checkpoint contents)")
    if old.get("env_steps", 0) > new["env_steps"]:
        differ.append(f"env_steps ({new['env_steps']} < the recorded {old['env_steps']}; it may only grow)")
    if differ:
        detail = "; ".join(f"{k}: recorded {old.get(k)!r}, now {new.get(k)!r}" if k in old or k in new else k
                           for k in differ)
        raise UserError(f"{tuner.out} holds a run with other arguments ({detail}); pass the recorded ones to "
                        f"resume, or choose a new --out (or --overwrite to move this run aside)")
