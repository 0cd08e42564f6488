"""Checkpoint folders: `config.json` + `model.safetensors` (+ optional `training_state/`).

A checkpoint rebuilds its policy (and names its environment) with no other input. Every file is
written to a temp file in the same folder and renamed into place, so a crash never leaves a
half-written file where a good one was. Nothing here unpickles: tensors come from safetensors,
everything else from JSON.
"""

from __future__ import annotations

import inspect
import platform
from pathlib import Path

import numpy as np
import torch

import steerlab
from steerlab.core.errors import CheckpointError
from steerlab.core.io import atomic_save_tensors, atomic_write_json, load_tensors, read_json
from steerlab.core.refs import is_ref
from steerlab.core.registry import Registry

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

# policy_type -> loader(meta, tensors, folder[, key]); steerlab's own are declared as entry points in its
# pyproject.toml (group "steerlab.policy_types"), so core names no upper layer and a checkpoint of one kind
# never imports the others; a loader with a `key` parameter serves keyed / sealed releases
POLICY_TYPES = Registry("policy type", group="steerlab.policy_types")


def versions() -> dict[str, str]:
    import numpy

    return {"steerlab": steerlab.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def save_checkpoint(folder: str | Path, policy_type: str, config: dict, tensors: dict[str, torch.Tensor],
                    extra: dict | None = None) -> Path:
    """Write weights first, then the config that points at them: a folder with a config.json is complete."""
    folder = Path(folder)
    atomic_save_tensors(folder / WEIGHTS_NAME, tensors)
    atomic_write_json(folder / CONFIG_NAME, {"policy_type": policy_type, "config": config,
                                             "versions": versions(), **(extra or {})})
    return folder


def read_checkpoint(folder: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    meta = read_json(folder / CONFIG_NAME)
    if "policy_type" not in meta or "config" not in meta:
        raise CheckpointError(f"{folder / CONFIG_NAME} lacks 'policy_type' or 'config'")
    return meta, load_tensors(folder / WEIGHTS_NAME)


def load_state_strict(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{where}: weights do not match the config (missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]})")
    for k, v in tensors.items():
        if expected[k].shape != v.shape:
            raise CheckpointError(f"{where}: tensor {k} has shape {tuple(v.shape)}, config expects "
                                  f"{tuple(expected[k].shape)}")
    module.load_state_dict(tensors)


def build_policy(meta: dict, tensors: dict[str, torch.Tensor], folder: str | Path, key=None):
    """Rebuild a policy from a checkpoint's parsed config.json and tensors (also used for nested bases).
    `key` selects a user's personal policy in a keyed or sealed release (steerlab.privacy.release)."""
    kind = meta.get("policy_type")
    loader = POLICY_TYPES.get(kind)
    if loader is None:
        raise CheckpointError(f"{folder}: unknown policy_type {kind!r}; known: {sorted(POLICY_TYPES.names())} "
                              f"(a plug-in's type needs its package installed)")
    if key is None:
        return loader(meta, tensors, folder)
    if "key" not in inspect.signature(loader).parameters:
        raise CheckpointError(f"{folder} is a {kind!r} checkpoint: it takes no key (only keyed and sealed "
                              f"releases from `steerlab personalize` do)")
    return loader(meta, tensors, folder, key=key)


def load_policy(folder: str | Path, key=None):
    """THE policy loader: a checkpoint folder or a `package.module:factory` reference (steerlab.core.refs;
    the factory's policy with the weights it builds, as a `factory` checkpoint without saved weights).

    Every command that takes a policy loads it here. `key` (a steerlab.privacy.keys.UserKey) selects a
    user's personal policy in a keyed or sealed release; without it, the release's no-key policy."""
    if is_ref(folder):
        if key is not None:
            raise CheckpointError(f"{folder} is a module:factory policy: it takes no key (only keyed and sealed "
                                  f"releases from `steerlab personalize` do)")
        return build_policy({"policy_type": "factory", "config": {"factory": str(folder), "kwargs": {}}}, None,
                            str(folder))
    meta, tensors = read_checkpoint(folder)
    return build_policy(meta, tensors, Path(folder), key=key)


# ---------------------------------------------------------------------- resumable training state
def optimizer_to_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten an optimizer's state into named tensors + JSON-able hyper-parameters (no pickle)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val):
                tensors[f"{prefix}.state.{pid}.{name}"] = val
            else:
                scalars[f"{pid}.{name}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor],
                           meta: dict) -> None:
    state: dict[int, dict] = {}
    head = f"{prefix}.state."
    for k, v in tensors.items():
        if k.startswith(head):
            pid, name = k[len(head):].split(".", 1)
            state.setdefault(int(pid), {})[name] = v.clone()
    for k, v in meta.get("scalars", {}).items():
        pid, name = k.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """Global torch + numpy RNG state (torch as a tensor, numpy as JSON)."""
    np_state = np.random.get_state()
    return ({"rng.torch": torch.get_rng_state()},
            {"numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]})


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    s = meta["numpy"]
    np.random.set_state((s[0], np.asarray(s[1], dtype=np.uint32), *s[2:]))
