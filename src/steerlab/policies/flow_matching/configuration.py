"""Configuration of the chunked flow-matching policy (saved verbatim in every checkpoint)."""

from __future__ import annotations

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
    env: dict = field(default_factory=dict)
    """What to roll the policy out in: {'suite': 'metaworld', 'task': ..., 'max_steps': ...}."""

    def __post_init__(self):
        # a checkpoint's config.json is user-editable: "hidden": "256" must be one line, not a torch traceback
        check_types(self, "FlowPolicyConfig")
        for name in ("obs_dim", "action_dim", "horizon", "embed_dim", "hidden", "encoder_depth", "velocity_depth",
                     "time_embed_dim", "num_inference_steps", "latent_dim", "vib_hidden", "vib_depth"):
            check_count(f"FlowPolicyConfig.{name}", getattr(self, name))
        if self.conditioning not in ("film", "concat"):
            raise ValueError(f"conditioning must be 'film' or 'concat', got {self.conditioning!r}")
        if not 1 <= self.n_action_steps <= self.horizon:
            raise ValueError(f"n_action_steps must be in [1, horizon={self.horizon}], got {self.n_action_steps}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FlowPolicyConfig:
        check_keys(cls, d, "FlowPolicyConfig")
        return cls(**d)
