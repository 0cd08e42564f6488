"""Train a tiny LeRobot DiffusionPolicy (state-only, or on cameras + state) with LeRobot's own training pieces,
in seconds.

The pieces `lerobot-train` itself uses: `LeRobotDataset` with the delta timestamps the policy config asks
for (`resolve_delta_timestamps`), the policy's pre-processor built from the dataset stats
(`make_pre_post_processors`), the policy's own loss (`DiffusionPolicy.forward`) and its optimizer preset;
the result is saved with `save_pretrained` as `lerobot-train` saves a checkpoint. (`lerobot-train` itself
would also need the `training` extra — accelerate, wandb — and a dataset that stores an environment-state
column, since LeRobot's diffusion config needs an image or an environment state.)
"""

from __future__ import annotations

from pathlib import Path

import offline_hf  # noqa: F401  (before lerobot)
import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata
from lerobot.datasets.factory import resolve_delta_timestamps
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
from lerobot.policies.factory import make_pre_post_processors

OBS_STATE, OBS_ENV, IMAGE_PREFIX = "observation.state", "observation.environment_state", "observation.images."
# the state-only policy declares its state as environment state too (diffusion needs one of image/env state)
ALIASES = {OBS_ENV: OBS_STATE}


def tiny_config(state_dim: int, action_dim: int, scheduler: str = "DDIM") -> DiffusionConfig:
    return DiffusionConfig(
        input_features={OBS_STATE: PolicyFeature(FeatureType.STATE, (state_dim,)),
                        OBS_ENV: PolicyFeature(FeatureType.ENV, (state_dim,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (action_dim,))},
        n_obs_steps=2, horizon=16, n_action_steps=8, down_dims=(64, 128), diffusion_step_embed_dim=32,
        noise_scheduler_type=scheduler, num_inference_steps=8, device="cpu", push_to_hub=False,
    )


def tiny_image_config(state_dim: int, action_dim: int, cameras: dict[str, tuple[int, int, int]]) -> DiffusionConfig:
    """Cameras (CHW shapes) + state, LeRobot's own vision encoder: a ResNet-18 trained from scratch (no
    pretrained weights are reachable offline; group norm, as LeRobot requires then), a center crop in eval."""
    _, h, w = next(iter(cameras.values()))
    return DiffusionConfig(
        input_features={OBS_STATE: PolicyFeature(FeatureType.STATE, (state_dim,)),
                        **{k: PolicyFeature(FeatureType.VISUAL, tuple(s)) for k, s in cameras.items()}},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (action_dim,))},
        n_obs_steps=2, horizon=16, n_action_steps=8, down_dims=(32, 64), diffusion_step_embed_dim=32,
        vision_backbone="resnet18", pretrained_backbone_weights=None, use_group_norm=True,
        crop_shape=(h - 2, w - 2), spatial_softmax_num_keypoints=8, noise_scheduler_type="DDIM",
        num_inference_steps=4, device="cpu", push_to_hub=False,
    )


def train_tiny_diffusion(dataset_root: Path, out: Path, steps: int = 30, seed: int = 0,
                         scheduler: str = "DDIM") -> Path:
    """A DDIM/DDPM policy on the dataset's state, or (a dataset with cameras) on its cameras + state."""
    torch.manual_seed(seed)
    meta = LeRobotDatasetMetadata("local/tiny", root=dataset_root)
    state_dim, action_dim = meta.features[OBS_STATE]["shape"][0], meta.features["action"]["shape"][0]
    cameras = {k: (f["shape"][2], f["shape"][0], f["shape"][1]) for k, f in meta.features.items()
               if k.startswith(IMAGE_PREFIX)}  # stored HWC, seen CHW
    stats = dict(meta.stats)
    if cameras:
        cfg = tiny_image_config(state_dim, action_dim, cameras)
    else:
        cfg = tiny_config(state_dim, action_dim, scheduler)
        stats[OBS_ENV] = stats[OBS_STATE]
    dataset = LeRobotDataset("local/tiny", root=dataset_root, delta_timestamps=resolve_delta_timestamps(cfg, meta))
    policy = DiffusionPolicy(cfg)
    pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    opt = cfg.get_optimizer_preset().build(policy.get_optim_params())
    loader = torch.utils.data.DataLoader(dataset, batch_size=min(32, len(dataset)), shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(seed))
    policy.train()
    done = 0
    while done < steps:
        for batch in loader:
            if not cameras:
                batch[OBS_ENV] = batch[OBS_STATE]
            loss, _ = policy.forward(pre(batch))
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    policy.eval()
    out.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return out
