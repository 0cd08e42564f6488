"""Save / load the flow-matching policy as a self-describing checkpoint folder."""

from __future__ import annotations

from pathlib import Path

from steerlab.core.checkpoint import CheckpointError, load_state_strict, save_checkpoint
from steerlab.policies.flow_matching.configuration import FlowPolicyConfig
from steerlab.policies.flow_matching.modeling import FlowMatchingPolicy


def save_flow_policy(policy: FlowMatchingPolicy, folder: str | Path, extra: dict | None = None) -> Path:
    norm = {"observation.state": {"mean": policy.obs_norm.mean.tolist(), "std": policy.obs_norm.std.tolist()},
            "action": {"mean": policy.action_norm.mean.tolist(), "std": policy.action_norm.std.tolist()}}
    return save_checkpoint(folder, FlowMatchingPolicy.policy_type, policy.config.to_dict(),
                           policy.state_dict(), extra={"normalization": norm, **(extra or {})})


def load_flow_policy(meta: dict, tensors: dict, folder: Path) -> FlowMatchingPolicy:
    try:
        cfg = FlowPolicyConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{folder}: invalid policy config ({err})") from err
    policy = FlowMatchingPolicy(cfg)
    load_state_strict(policy, tensors, str(folder))
    return policy.eval()
