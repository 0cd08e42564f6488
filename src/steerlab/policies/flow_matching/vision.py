"""The flow policy's camera encoders: one image encoder per camera or one shared, over crops.

Images arrive as float32 (B, 3, H, W) in [0, 1] (`steerlab.core.observations`). While the module is
in training mode (pretraining) each image is randomly cropped to `crop_size`; otherwise (acting,
steering, evaluation: the policy is frozen and in eval mode) the centre crop is used, so the features an
RL actor sees are a deterministic function of the observation.
"""

from __future__ import annotations

import torch
from torch import nn

from steerlab.core.observations import image_key
from steerlab.policies.backbones import ImageEncoder, crop_images


class CameraEncoders(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cameras = list(cfg.cameras)
        self.shared = bool(cfg.vision_shared)
        self.crop = cfg.crop_size
        names = ["shared"] if self.shared else self.cameras
        self.backbones = nn.ModuleDict({n: ImageEncoder(cfg.vision_backbone, cfg.vision_keypoints,
                                                        cfg.vision_features) for n in names})
        self.out_dim = len(self.cameras) * cfg.vision_features

    def forward(self, obs: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, cameras·vision_features) image features, cameras in config order."""
        crops = [crop_images(obs[image_key(c)], self.crop, generator, random=self.training) for c in self.cameras]
        if self.shared:  # one forward over all cameras (GroupNorm is per sample: same numbers as one by one)
            feats = self.backbones["shared"](torch.cat(crops)).chunk(len(crops))
        else:
            feats = [self.backbones[c](x) for c, x in zip(self.cameras, crops)]
        return torch.cat(list(feats), dim=-1)
