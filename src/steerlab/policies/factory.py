"""Policies built by a user's Python factory: `package.module:make_policy` (a callable returning the policy).

This is how a policy steerlab did not train enters the pipeline without a converter: anything that
implements the steerable-policy protocol and can be built by an importable callable. Its checkpoint
(`policy_type: factory`) records the reference and a copy of the module's weights (safetensors); loading
calls the factory again and loads the copied weights, so a steered or plug-in-VIB checkpoint rebuilds the
exact policy it was trained on. Loading imports the named module: only load checkpoints you trust the
code of, as with any Python package.
"""

from __future__ import annotations

from pathlib import Path

import torch

from steerlab.core.checkpoint import (
    CheckpointError,
    build_policy,
    load_state_strict,
    read_checkpoint,
    save_checkpoint,
)
from steerlab.core.errors import UserError
from steerlab.core.refs import call_ref, is_ref, resolve_ref

POLICY_TYPE = "factory"


def resolve_factory(ref: str):
    """The callable named by 'package.module:attr' (one-line error naming `ref` when it cannot be imported)."""
    return resolve_ref(ref, "factory")


def build_factory_policy(ref: str, kwargs: dict | None = None):
    """The policy `ref(**kwargs)` returns (in eval mode); a failing factory is one line naming it."""
    policy = call_ref(ref, "factory", **(kwargs or {}))
    if policy is None:
        raise UserError(f"factory {ref!r} returned None: it must return the policy (a torch.nn.Module)")
    if isinstance(policy, torch.nn.Module):
        policy.eval()
    return policy


def _weights(policy) -> dict[str, torch.Tensor]:
    if not isinstance(policy, torch.nn.Module):
        return {}
    return {k: v.detach().clone().contiguous() for k, v in policy.state_dict().items()}


def factory_checkpoint(policy, ref: str, kwargs: dict | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """(meta, tensors) of a factory checkpoint for `policy` built by `ref(**kwargs)`."""
    return {"policy_type": POLICY_TYPE, "config": {"factory": ref, "kwargs": dict(kwargs or {})}}, _weights(policy)


def save_factory_policy(policy, ref: str, folder: str | Path, kwargs: dict | None = None) -> Path:
    meta, tensors = factory_checkpoint(policy, ref, kwargs)
    return save_checkpoint(folder, POLICY_TYPE, meta["config"], tensors)


def load_factory_policy(meta: dict, tensors: dict | None, folder: Path):
    """A factory checkpoint's policy; `tensors` None (a bare `module:factory`): the weights the factory built."""
    cfg = meta["config"]
    if "factory" not in cfg:
        raise CheckpointError(f"{folder}: a factory checkpoint must name its 'factory'")
    policy = build_factory_policy(cfg["factory"], cfg.get("kwargs"))
    if tensors is None:
        return policy
    if isinstance(policy, torch.nn.Module):
        load_state_strict(policy, tensors, str(folder))
        policy.eval()
    elif tensors:
        raise CheckpointError(f"{folder}: {cfg['factory']} no longer builds a torch module, but weights were saved")
    return policy


def is_factory_ref(spec: str) -> bool:
    """'package.module:callable' (and not an existing folder)."""
    return is_ref(spec)


def load_policy_source(spec: str | Path):
    """(policy, checkpoint meta, checkpoint tensors) from a checkpoint folder or a `module:factory` reference.

    A factory's policy gets the meta/tensors of a `factory` checkpoint (a copy of its weights), so
    anything built on it (a plug-in VIB, a steered policy) saves and reloads it like a folder.
    """
    if is_factory_ref(str(spec)):
        policy = build_factory_policy(str(spec))
        meta, tensors = factory_checkpoint(policy, str(spec))
        return policy, meta, tensors
    meta, tensors = read_checkpoint(spec)
    return build_policy(meta, tensors, spec), meta, tensors
