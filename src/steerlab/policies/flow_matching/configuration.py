"""Configuration of the chunked flow-matching policy (saved verbatim in every checkpoint)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from steerlab.core.config import check_count, check_keys, check_types


@dataclass
class FlowPolicyConfig:
    obs_dim: int = 39
    """Size of the state observation."""
    action_dim: int = 4
    """Size of one action."""
    horizon: int = 8
    """Prediction horizon: actions per generated chunk."""
    n_action_steps: int = 2
    """Actions of each chunk executed before re-planning (the rest is discarded)."""
    embed_dim: int = 128
    """Width of the observation embedding e that conditions the generator."""
    hidden: int = 256
    """Hidden width of the encoder and of the velocity network."""
    encoder_depth: int = 2
    """Hidden layers of the observation encoder."""
    velocity_depth: int = 3
    """Hidden layers of the velocity network."""
    conditioning: str = "film"
    """How e conditions the velocity network: 'film' (per-layer scale/shift) or 'concat'."""
    time_embed_dim: int = 32
    """Sinusoidal embedding size of the flow time t."""
    num_inference_steps: int = 5
    """Euler steps from noise to an action chunk."""
    use_vib: bool = True
    """Attach the plug-in variational information bottleneck (ZPRL's latent interface)."""
    latent_dim: int = 8
    """Size of the bottleneck latent z."""
    vib_hidden: int = 256
    vib_depth: int = 3
    vib_beta: float = 1e-4
    """Weight of KL(q(z|e) ‖ N(0, I))."""
    vib_recon_weight: float = 0.01
    """Weight of ‖dec(z) − e‖²."""
    vib_stochastic: bool = True
    """False turns the VIB into a deterministic autoencoder (ablation)."""
    act_through_vib: bool = True
    """The deployed base policy conditions on dec(μ) instead of e (set once the VIB is trained)."""
    cameras: list = field(default_factory=list)
    """Camera names the policy sees (`observation.images.<camera>`); empty: a state-only policy."""
    image_size: list = field(default_factory=lambda: [84, 84])
    """[H, W] of every camera's frames (uint8 HWC from the env/dataset, float CHW in the policy)."""
    vision_backbone: str = "small"
    """Image encoder: 'small' (a 4-layer conv net sized for CPU) or 'resnet18' (GroupNorm, random init, as in
    Diffusion Policy); both end in spatial-softmax keypoints."""
    vision_shared: bool = True
    """One encoder for all cameras (True) or one per camera."""
    vision_keypoints: int = 32
    """Spatial-softmax keypoints per camera."""
    vision_features: int = 64
    """Per-camera image feature size, concatenated with the normalized state before the encoder MLP."""
    crop_ratio: float = 0.9
    """Crop side / image side: random crops while pretraining (augmentation), the centre crop when acting."""
    env: dict = field(default_factory=dict)
    """What to roll the policy out in: {'suite': 'metaworld', 'task': ..., 'max_steps': ...}."""

    def __post_init__(self):
        # a checkpoint's config.json is user-editable: "hidden": "256" must be one line, not a torch traceback
        check_types(self, "FlowPolicyConfig")
        for name in ("obs_dim", "action_dim", "horizon", "embed_dim", "hidden", "encoder_depth", "velocity_depth",
                     "time_embed_dim", "num_inference_steps", "latent_dim", "vib_hidden", "vib_depth"):
            check_count(f"FlowPolicyConfig.{name}", getattr(self, name))
        if self.cameras:
            check_count("FlowPolicyConfig.vision_keypoints", self.vision_keypoints)
            check_count("FlowPolicyConfig.vision_features", self.vision_features)
            for cam in self.cameras:
                if not isinstance(cam, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", cam):
                    raise ValueError(f"camera names are letters, digits, '_' or '-'; got {cam!r}")
            if len(set(self.cameras)) != len(self.cameras):
                raise ValueError(f"cameras must be distinct, got {self.cameras}")
            if (len(self.image_size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 8
                                                 for v in self.image_size)):
                raise ValueError(f"image_size must be [H, W] with H, W >= 8, got {self.image_size}")
            if self.vision_backbone not in ("small", "resnet18"):
                raise ValueError(f"vision_backbone must be 'small' or 'resnet18', got {self.vision_backbone!r}")
            if not 0.5 <= self.crop_ratio <= 1.0:
                raise ValueError(f"crop_ratio must be in [0.5, 1], got {self.crop_ratio}")
        if self.conditioning not in ("film", "concat"):
            raise ValueError(f"conditioning must be 'film' or 'concat', got {self.conditioning!r}")
        if not 1 <= self.n_action_steps <= self.horizon:
            raise ValueError(f"n_action_steps must be in [1, horizon={self.horizon}], got {self.n_action_steps}")

    @property
    def crop_size(self) -> tuple[int, int]:
        return tuple(max(1, round(self.crop_ratio * v)) for v in self.image_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FlowPolicyConfig:
        check_keys(cls, d, "FlowPolicyConfig")
        return cls(**d)
