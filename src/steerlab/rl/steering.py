"""Steering adapters: what the SAC actor controls on top of a frozen flow-matching policy.

Every adapter answers three questions and nothing else, so all methods share one SAC, one replay
buffer and one training loop:

* `features(obs, train)`  what the actor and critic see
* `chunk(feats, action)`  how an actor output in [-1, 1]^act_dim becomes an executed action chunk
* `critic_action(feats, action)`  what the critic values (ZPRL values the applied latent)

| method              | actor output                    | applied as                                   |
|---------------------|---------------------------------|----------------------------------------------|
| zprl                | Δz ∈ [-1,1]^latent_dim          | z + λ·Δz, decoded by the VIB, frozen generator |
| action-residual     | r ∈ [-1,1]^(n_exec·A)           | base actions + scale·r (Policy-Decorator)    |
| dsrl                | w ∈ [-1,1]^(H·A)                | sampler noise ε = magnitude·w                |
| embedding-residual  | Δe ∈ [-1,1]^embed_dim           | e + λ_e·Δe, no bottleneck (ablation)         |
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch

from steerlab.core.checkpoint import CheckpointError, load_state_strict, save_checkpoint
from steerlab.policies.flow_matching import FlowMatchingPolicy
from steerlab.policies.flow_matching.checkpointing import load_flow_policy

METHODS = ("zprl", "action-residual", "dsrl", "embedding-residual")


@dataclass
class SteeringConfig:
    method: str = "zprl"
    """zprl | action-residual | dsrl | embedding-residual"""
    latent_scale: float | None = None
    """ZPRL λ. None: latent_rms_ratio × RMS of the base latent μ measured on the demonstration data."""
    latent_rms_ratio: float = 0.3
    """λ / RMS(μ) when latent_scale is None. A saturated residual moves z by 0.3·RMS(z); a typical one
    (|Δz| ≈ 1/3) by ≈ 0.1·RMS(z), zprl.md's rule of thumb. The CPU probe found 0.3–0.5 worked."""
    latent_sample: bool = True
    """ZPRL actor sees a posterior sample z ~ q(z|e) while training (μ when acting deterministically)."""
    residual_scale: float = 0.05
    """action-residual: bound of the residual added to each executed base action."""
    progressive_steps: int = 20_000
    """action-residual: residual applied with probability min(env_step / T, 1) while training."""
    noise_magnitude: float = 1.5
    """dsrl: initial-noise bound of the flow sampler."""
    embedding_scale: float | None = None
    """embedding-residual λ_e. None: latent_rms_ratio × RMS of e on the demonstration data."""
    start: str = "base"
    """Where the actor starts (issue 13). 'base': the method's own start (`Adapter.sac_start`): for the
    latent/embedding residuals a zero-mean, low-std actor (the base policy plus small exploration), for
    dsrl the base's own noise distribution with an entropy target that keeps it there; and
    `critic_warmup` critic-only decisions before the actor moves. 'random': the plain SAC
    initialisation and no critic-only phase (how runs before issue 13 were made)."""
    critic_warmup: int | None = None
    """Decisions after the warm-up during which only the critic learns (the actor keeps its start and
    explores with it). None: the method's default with start='base' (`Adapter.critic_warmup`), 0 otherwise."""

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown steering method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.start not in ("base", "random"):
            raise ValueError(f"steering start must be 'base' or 'random', got {self.start!r}")
        if self.critic_warmup is not None and int(self.critic_warmup) < 0:
            raise ValueError(f"critic_warmup must be >= 0, got {self.critic_warmup}")

    @classmethod
    def from_dict(cls, d: dict) -> SteeringConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class Adapter:
    """Base: the frozen policy and the sizes the SAC needs. Subclasses are the four methods."""

    name = ""
    sac_start: dict = {}
    """SACConfig fields this method sets when `start='base'` (where its actor starts)."""
    default_critic_warmup: int = 0
    """Critic-only decisions after the warm-up when `start='base'` and `critic_warmup` is None."""

    def __init__(self, base: FlowMatchingPolicy, cfg: SteeringConfig, latent_stats: dict):
        self.base = base.eval()
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.cfg = cfg
        self.n_exec = base.config.n_action_steps
        self.obs_dim = 0
        self.act_dim = 0

    # called by the loop -----------------------------------------------------------------------
    def features(self, obs: torch.Tensor, train: bool, gen: torch.Generator | None = None,
                 noise: torch.Tensor | None = None) -> torch.Tensor:
        """`noise` is the sampler noise of this decision (only adapters that look at the base plan use it)."""
        raise NotImplementedError

    def chunk(self, feats: torch.Tensor, action: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Executed actions in env units, (B, horizon, A); `action` in [-1,1]^act_dim."""
        raise NotImplementedError

    def critic_action(self, feats: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return action

    def warmup_action(self, batch: int, noise: torch.Tensor) -> np.ndarray:
        """Actor output that reproduces the base policy (used for the first warm-up decisions)."""
        return np.zeros((batch, self.act_dim), np.float32)

    def resolve_sac(self, sac_cfg):
        """The SACConfig this method trains with: `sac_cfg` plus the method's start (start='base')."""
        if self.cfg.start != "base":
            return sac_cfg
        defaults = type(sac_cfg)()
        # a value the user set explicitly (different from SACConfig's default) wins over the method's start
        return replace(sac_cfg, **{k: v for k, v in self.sac_start.items()
                                   if getattr(sac_cfg, k) == getattr(defaults, k)})

    @property
    def critic_warmup(self) -> int:
        if self.cfg.critic_warmup is not None:
            return int(self.cfg.critic_warmup)
        return self.default_critic_warmup if self.cfg.start == "base" else 0

    def config_dict(self) -> dict:
        return {"method": self.name, **{k: v for k, v in asdict(self.cfg).items() if k != "method"},
                "resolved_scale": getattr(self, "scale", None)}

    # helpers -----------------------------------------------------------------------------------
    def _embed(self, obs: torch.Tensor) -> torch.Tensor:
        return self.base.embed(obs)

    def _decode(self, cond: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.base.unnormalize_actions(self.base.generate(cond, noise))


# Latent residuals start as the base: Δz = 0 exactly, exploration std 0.2 in pre-tanh units (a typical
# applied residual λ·0.2 ≈ 0.06·RMS(z)), and the critic learns 1,000 decisions of that exploration
# before the actor moves. Without it the random initial mean (|Δz| ≈ 0.1–0.5) and actor updates through
# a critic that has only seen Δz = 0 moved the policy off the base right after warm-up (issue 13, item 5).
LATENT_START = {"actor_init_zero_mean": True, "actor_init_std": 0.2}


class ZPRLAdapter(Adapter):
    name = "zprl"
    sac_start = LATENT_START
    default_critic_warmup = 1_000

    def __init__(self, base, cfg, latent_stats):
        super().__init__(base, cfg, latent_stats)
        if base.vib is None:
            raise ValueError("zprl needs a base policy with a trained VIB (pretrain with the VIB, or "
                             "`steerlab pretrain --vib-only --from <ckpt>`)")
        d, e = base.config.latent_dim, base.config.embed_dim
        self.scale = cfg.latent_scale if cfg.latent_scale is not None else cfg.latent_rms_ratio * latent_stats["mu_rms"]
        self.obs_dim, self.act_dim, self.embed_dim = e + d, d, e

    def features(self, obs, train, gen=None, noise=None):
        e = self._embed(obs)
        mu, logvar = self.base.latent(e)
        z = self.base.vib.sample(mu, logvar, gen) if (train and self.cfg.latent_sample) else mu
        return torch.cat([e, z], dim=-1)

    def applied_latent(self, feats, action):
        return feats[:, self.embed_dim:] + self.scale * action

    def critic_action(self, feats, action):
        return self.applied_latent(feats, action)

    def chunk(self, feats, action, noise):
        return self._decode(self.base.vib.decode(self.applied_latent(feats, action)), noise)


class ActionResidualAdapter(Adapter):
    name = "action-residual"

    def __init__(self, base, cfg, latent_stats):
        super().__init__(base, cfg, latent_stats)
        self.scale = cfg.residual_scale
        a = base.config.action_dim
        self.obs_dim = base.config.obs_dim + self.n_exec * a  # normalized obs + the base actions it corrects
        self.act_dim = self.n_exec * a

    def features(self, obs, train, gen=None, noise=None):
        # the residual policy sees the base plan; sample it here (with the noise the chunk will use)
        e = self._embed(obs)
        if noise is None:
            noise = torch.randn((obs.shape[0], *self.base.chunk_shape), generator=gen)
        base_chunk = self._decode(self.base.condition(e), noise)
        return torch.cat([self.base.obs_norm.normalize(obs), base_chunk[:, : self.n_exec].flatten(1)], dim=-1)

    def chunk(self, feats, action, noise):
        base_exec = feats[:, self.base.config.obs_dim:].reshape(-1, self.n_exec, self.base.config.action_dim)
        exec_ = (base_exec + self.scale * action.reshape(base_exec.shape)).clamp(-1.0, 1.0)
        # only the executed prefix is ever used; pad with the last action to keep the (B, H, A) contract
        pad = exec_[:, -1:].expand(-1, self.base.config.horizon - self.n_exec, -1)
        return torch.cat([exec_, pad], dim=1)


class DSRLAdapter(Adapter):
    name = "dsrl"
    # Start at the base's own noise distribution: zero mean, pre-tanh std 0.8, so ε = 1.5·tanh(u) has a
    # per-dimension std ≈ 0.9 (N(0, 1) clipped to the bound is what the base samples). Entropy target 0
    # (the DSRL paper's): the default −dim/2 = −16 nats for a 32-d noise let α collapse the actor onto a
    # few saturated noise vectors (‖ε‖ far from a Gaussian's √32) within ~500 updates (issue 13, item 3).
    sac_start = {"actor_init_zero_mean": True, "actor_init_std": 0.8, "target_entropy": 0.0}
    default_critic_warmup = 1_000

    def __init__(self, base, cfg, latent_stats):
        super().__init__(base, cfg, latent_stats)
        self.scale = cfg.noise_magnitude
        self.obs_dim = base.config.embed_dim
        self.act_dim = base.config.horizon * base.config.action_dim

    def features(self, obs, train, gen=None, noise=None):
        return self._embed(obs)

    def chunk(self, feats, action, noise):
        cond = self.base.condition(feats)
        return self._decode(cond, self.scale * action.reshape(-1, *self.base.chunk_shape))

    def warmup_action(self, batch, noise):
        # the base policy's own Gaussian noise, expressed in the actor's bounded action space
        return (noise.reshape(batch, -1) / self.scale).clamp(-1.0, 1.0).numpy()


class EmbeddingResidualAdapter(Adapter):
    name = "embedding-residual"
    sac_start = LATENT_START  # the ablation of ZPRL's bottleneck starts like ZPRL
    default_critic_warmup = 1_000

    def __init__(self, base, cfg, latent_stats):
        super().__init__(base, cfg, latent_stats)
        self.scale = (cfg.embedding_scale if cfg.embedding_scale is not None
                      else cfg.latent_rms_ratio * latent_stats["e_rms"])
        self.obs_dim = self.act_dim = base.config.embed_dim

    def features(self, obs, train, gen=None, noise=None):
        return self._embed(obs)

    def chunk(self, feats, action, noise):
        cond = self.base.condition(feats, embedding_residual=self.scale * action, through_vib=False)
        return self._decode(cond, noise)


ADAPTERS = {cls.name: cls for cls in (ZPRLAdapter, ActionResidualAdapter, DSRLAdapter, EmbeddingResidualAdapter)}


def make_adapter(base: FlowMatchingPolicy, cfg: SteeringConfig, latent_stats: dict) -> Adapter:
    return ADAPTERS[cfg.method](base, cfg, latent_stats)


class SteeredPolicy:
    """Frozen base + adapter + the SAC actor acting deterministically: what `evaluate` rolls out."""

    policy_type = "steered"

    def __init__(self, base: FlowMatchingPolicy, adapter: Adapter, sac, task: str | None = None,
                 shift: str | None = None):
        self.base, self.adapter, self.sac = base, adapter, sac
        # `shift`: the deployment shift it was finetuned under (evaluate applies it by default)
        self.env_spec = dict(base.config.env, **({"task": task} if task else {}), **({"shift": shift} if shift else {}))

    @property
    def n_action_steps(self) -> int:
        return self.base.config.n_action_steps

    @property
    def chunk_shape(self) -> tuple[int, int]:
        return self.base.chunk_shape

    @torch.no_grad()
    def predict_chunk(self, obs, *, noise=None) -> np.ndarray:
        x = self.base._as_obs_tensor(obs)
        if noise is None:
            noise = torch.randn((x.shape[0], *self.chunk_shape))
        feats = self.adapter.features(x, train=False, noise=noise)
        action = torch.as_tensor(self.sac.act(feats.numpy(), deterministic=True))
        return self.adapter.chunk(feats, action, noise).numpy()


def save_steered_policy(policy: SteeredPolicy, folder, base_meta: dict, sac_config: dict):
    tensors = {f"base.{k}": v for k, v in policy.base.state_dict().items()}
    tensors.update({f"actor.{k}": v for k, v in policy.sac.actor.state_dict().items()})
    config = {"steering": policy.adapter.config_dict(), "sac": sac_config, "obs_dim": policy.adapter.obs_dim,
              "act_dim": policy.adapter.act_dim, "base": base_meta, "env": policy.env_spec}
    return save_checkpoint(folder, SteeredPolicy.policy_type, config, tensors)


def load_steered_policy(meta: dict, tensors: dict, folder) -> SteeredPolicy:
    from steerlab.rl.sac import SAC, SACConfig

    cfg = meta["config"]
    base = load_flow_policy(cfg["base"], {k[5:]: v for k, v in tensors.items() if k.startswith("base.")}, folder)
    steering = SteeringConfig.from_dict(cfg["steering"])
    # the scale was resolved from data statistics at training time; pin it so loading needs no data
    resolved = cfg["steering"].get("resolved_scale")
    if steering.method == "zprl":
        steering.latent_scale = resolved
    elif steering.method == "embedding-residual":
        steering.embedding_scale = resolved
    adapter = make_adapter(base, steering, cfg["base"].get("latent_stats", {}))
    if (adapter.obs_dim, adapter.act_dim) != (cfg["obs_dim"], cfg["act_dim"]):
        raise CheckpointError(f"{folder}: adapter sizes {(adapter.obs_dim, adapter.act_dim)} do not match "
                              f"the checkpoint's {(cfg['obs_dim'], cfg['act_dim'])}")
    sac = SAC(adapter.obs_dim, adapter.act_dim, SACConfig(**cfg["sac"]), critic_action_fn=adapter.critic_action)
    load_state_strict(sac.actor, {k[6:]: v for k, v in tensors.items() if k.startswith("actor.")}, str(folder))
    return SteeredPolicy(base, adapter, sac, task=cfg["env"].get("task"), shift=cfg["env"].get("shift"))
