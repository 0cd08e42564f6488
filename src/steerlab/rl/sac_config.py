"""`SACConfig`: every knob of SAC (rl/sac.py), with its default and the reason for it."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class SACConfig:
    hidden: int = 256
    """Width of the two hidden layers of the actor and of every critic head."""
    actor_lr: float = 1e-4
    """Adam learning rate of the actor (ZPRL: 1e-4)."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critic ensemble."""
    alpha_lr: float = 3e-4
    """Adam learning rate of log α (automatic entropy tuning)."""
    batch_size: int = 256
    """Transitions per gradient update (what `update_many` samples from the replay buffer)."""
    tau: float = 0.005
    """Polyak factor: target ← (1 − τ)·target + τ·online, every `target_update_interval` updates."""
    target_update_interval: int = 1
    """Critic updates between two target updates."""
    actor_update_interval: int = 1
    """Critic updates between two actor (and α) updates; 1 = every update, > 1 = TD3-style delay."""
    num_critics: int = 2
    """Critic ensemble heads (2 = SAC's twin critics; REDQ uses 10). Cost grows linearly on a CPU."""
    critic_pair: int = 2
    """The target takes its min over a random subset of this many heads, drawn each update (REDQ).
    With num_critics = critic_pair = 2 it is SAC's clipped double-Q."""
    actor_q: str = "mean"
    """How the actor loss reduces the heads' Q(s, π(s)): "mean" over all heads (REDQ) or "min"."""
    critic_layer_norm: bool = False
    """LayerNorm (no affine) before each hidden ReLU of the critics; stabilises high update-to-data ratios."""
    critic_hidden: int | None = None
    """Width of every critic head's hidden layers; None: `hidden` (the actor's width)."""
    critic_layers: int = 2
    """Hidden layers per critic head (DSRL's published recipe: 3 × 2048 with LayerNorm)."""
    actor_layer_norm: bool = False
    """LayerNorm (affine) before each hidden ReLU of the actor."""
    utd: int = 1
    """Gradient updates per environment decision (`update_many`'s default count)."""
    grad_clip: float | None = None
    """Max global gradient norm applied to each network separately; None: no clipping."""
    init_temperature: float = 0.01
    """Initial entropy weight α. Small on purpose: with rewards O(0.1–1) per decision a larger α lets
    the entropy bonus dominate the critic (zprl-on-cpu.md: 0.01 worked, the usual 1.0 did not)."""
    target_entropy: float | None = None
    """Entropy target in nats; None: −target_entropy_scale · act_dim."""
    target_entropy_scale: float = 0.5
    """Factor of the default entropy target (ZPRL: −dim(z)/2)."""
    log_std_min: float = -5.0
    """Lower bound of the actor's log std (tanh-rescaled, so the bound is smooth)."""
    log_std_max: float = 2.0
    """Upper bound of the actor's log std."""
    actor_init_zero_mean: bool = False
    """Zero the actor's mean head: the untrained actor's mean action is exactly 0 (for a residual method,
    the base policy itself), so the first actor updates start from the base instead of a random offset."""
    actor_init_std: float | None = None
    """Initial std of the actor's pre-tanh Gaussian, the same for every state (log-std head weights zeroed);
    None: the default initialisation (std ≈ exp((log_std_min + log_std_max) / 2) ≈ 0.22, varying by state)."""
    actor_tether: float = 0.0
    """Weight β of a pull of the actor's mean action toward 0 (for a steering method: the base policy):
    the actor loss gains β · mean|Q| · mean over dims of tanh(mean)², so a mean at the bound in every
    dimension costs a fraction β of the value (scale-free, as TD3+BC's λ). Adam moves the actor at a speed
    set by its learning rate, not by how sure the critic is; the tether gives that move a restoring force,
    so the actor leaves the base only as far as the critic's slope pays for. 0: off (plain SAC)."""
    actor_tether_updates: int = 0
    """Actor updates over which the tether fades linearly to 0; 0: it never fades."""

    def __post_init__(self):
        for name in ("hidden", "batch_size", "target_update_interval", "actor_update_interval", "num_critics", "utd",
                     "critic_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SACConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.critic_pair <= self.num_critics:
            raise ValueError(f"critic_pair must be in [1, num_critics={self.num_critics}], got {self.critic_pair}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.init_temperature <= 0:
            raise ValueError(f"init_temperature must be > 0 (α is learned as log α), got {self.init_temperature}")
        if not self.actor_tether >= 0 or int(self.actor_tether_updates) < 0:
            raise ValueError(f"actor_tether must be >= 0 and actor_tether_updates >= 0, got {self.actor_tether}, "
                             f"{self.actor_tether_updates}")
        if self.critic_hidden is not None and int(self.critic_hidden) < 1:
            raise ValueError(f"SACConfig.critic_hidden must be None or >= 1, got {self.critic_hidden}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be None or > 0, got {self.grad_clip}")
        if self.actor_q not in ("mean", "min"):
            raise ValueError(f"actor_q must be 'mean' or 'min', got {self.actor_q!r}")
        if not self.log_std_min < self.log_std_max:
            raise ValueError(f"need log_std_min < log_std_max, got {self.log_std_min}, {self.log_std_max}")
        if self.actor_init_std is not None and not (
                math.exp(self.log_std_min) < self.actor_init_std < math.exp(self.log_std_max)):
            raise ValueError(f"actor_init_std must lie strictly between exp(log_std_min) and exp(log_std_max), "
                             f"got {self.actor_init_std}")
