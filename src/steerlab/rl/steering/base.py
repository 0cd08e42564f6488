"""What every steering method is: a plug-in that tells one SAC what it controls on a frozen policy.

A method answers these questions and nothing else, so all methods share one SAC, one replay buffer and
one training loop (`train/finetune/` never asks which method it runs):

* `features(obs, train, gen, noise)`   what the actor and critic see
* `chunk(obs, feats, action, noise)`   how an actor output in [-1, 1]^act_dim becomes an action chunk
* `critic_action(feats, action)`       what the critic values (ZPRL values the applied latent)
* `warmup_action(batch, noise)`        the actor output that reproduces the base policy (warm-up)
* `explore(action, env_steps, rng)`    its exploration schedule on top of the SAC's own sampling
* `Config` + `scale` + `config_dict()` its options, its resolved scale rule, and what its checkpoints hold
* `make_learner(sac_cfg, seed)`       the learner that trains the actor: the shared SAC by default; a method
                                      whose update differs (dsrl-na's two critics) returns a SAC subclass

Each method talks to the policy through `steerlab.policies.protocol` only, at its `level`. A new method
is one module that subclasses `SteeringMethod` and decorates it with `@register` (see docs/steering.md).
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch

from steerlab.core.errors import UserError
from steerlab.core.observations import batch_size, obs_device
from steerlab.core.registry import Registry
from steerlab.policies.protocol import check_steerable


@dataclass
class MethodConfig:
    """Options common to every method; subclasses add theirs, one docstring per field."""

    start: str = "base"
    """Where the actor starts (issue 13). 'base': the method's own start (`SteeringMethod.sac_start`):
    for the latent/embedding residuals a zero-mean, low-std actor (the base policy plus small
    exploration), for dsrl the base's own noise distribution; and `critic_warmup` critic-only decisions
    before the actor moves. 'random': the plain SAC initialisation, no critic-only phase (the runs
    recorded before issue 13)."""
    critic_warmup: int | None = None
    """Decisions after the warm-up during which only the critic learns (the actor keeps its start and
    explores with it). None: the method's default with start='base' (`default_critic_warmup`), else 0."""

    def __post_init__(self):
        if self.start not in ("base", "random"):
            raise UserError(f"steering start must be 'base' or 'random', got {self.start!r}")
        if self.critic_warmup is not None and (isinstance(self.critic_warmup, bool) or int(self.critic_warmup) < 0):
            raise UserError(f"critic_warmup must be an integer >= 0, got {self.critic_warmup!r}")

    @classmethod
    def from_dict(cls, d: dict, strict: bool = True) -> MethodConfig:
        """Build from a dict; `strict` rejects keys this method does not know (CLI input), non-strict
        ignores them (checkpoints written when all methods shared one config)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"method", "resolved_scale", "module"})
        if unknown and strict:
            raise UserError(f"unknown option(s) {unknown} for this steering method; known: {sorted(known)}")
        return cls(**{k: v for k, v in d.items() if k in known})


class SteeringMethod:
    """Base class: the frozen policy and the sizes the SAC needs. Subclasses are the methods."""

    name = ""
    """Registry name (`--method`)."""
    level = "action"
    """Protocol level the policy must implement (policies/protocol.py)."""
    Config: type[MethodConfig] = MethodConfig
    """The method's own options."""
    scale_field: str | None = None
    """Config field whose None means "derive the scale from data statistics"; checkpoints pin it."""
    sac_start: dict = {}
    """SACConfig fields this method sets with start='base' (where its actor starts), unless set explicitly."""
    default_critic_warmup: int = 0
    """Critic-only decisions after the warm-up with start='base' when `critic_warmup` is None."""
    keeps_sampler: bool = True
    """The frozen sampler's noise reaches the chunk (the sampler-mode rule applies, train/finetune/mode.py);
    False for a method whose actor chooses ε itself (dsrl): the base's sampler only runs its warm-up."""

    def __init__(self, policy, cfg: MethodConfig | None = None, stats: dict | None = None):
        check_steerable(policy, self.level, self.name)
        self.policy = policy
        if isinstance(policy, torch.nn.Module):  # steering never trains the policy
            policy.eval()
        self.cfg = cfg if cfg is not None else self.Config()
        self.stats = dict(stats or {})
        self.n_exec = int(policy.n_action_steps)
        self.scale: float | None = None
        self.obs_dim = 0
        self.act_dim = 0

    # ------------------------------------------------------------------ called by the loop
    def features(self, obs: torch.Tensor, train: bool, gen: torch.Generator | None = None,
                 noise: torch.Tensor | None = None) -> torch.Tensor:
        """`noise` is the sampler noise of this decision (methods that look at the base plan use it)."""
        raise NotImplementedError

    def chunk(self, obs: torch.Tensor, feats: torch.Tensor, action: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Executed actions in env units, (B, horizon, A); `action` in [-1, 1]^act_dim."""
        raise NotImplementedError

    def critic_action(self, feats: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return action

    def warmup_action(self, batch: int, noise: torch.Tensor) -> np.ndarray:
        """Actor output that reproduces the base policy (used for the first warm-up decisions)."""
        return np.zeros((batch, self.act_dim), np.float32)

    def explore(self, action: torch.Tensor, env_steps: int, rng: np.random.Generator) -> torch.Tensor:
        """The method's exploration schedule while training (default: the SAC sample as is)."""
        return action

    def make_learner(self, sac_cfg, seed: int, device: str | torch.device = "cpu"):
        """The learner of this method: the shared SAC on (features, actor output) by default. A method whose
        update is not one SAC update returns a `SAC` subclass (same acting, replay and save/resume interface)
        that replaces the steps it changes; the training loop never asks which method it runs."""
        from steerlab.rl.sac import SAC

        return SAC(self.obs_dim, self.act_dim, sac_cfg, device=device, seed=seed, critic_action_fn=self.critic_action)

    # ------------------------------------------------------------------ where the actor starts
    def resolve_sac(self, sac_cfg, explicit=()):
        """The SACConfig this method trains with: `sac_cfg` plus the method's start (start='base'). A field named
        in `explicit`, or set to anything but SACConfig's default, is the user's and wins."""
        if self.cfg.start != "base" or not self.sac_start:
            return sac_cfg
        defaults, explicit = type(sac_cfg)(), set(explicit)
        return replace(sac_cfg, **{k: v for k, v in self.sac_start.items()
                                   if k not in explicit and getattr(sac_cfg, k) == getattr(defaults, k)})

    @property
    def critic_warmup(self) -> int:
        if self.cfg.critic_warmup is not None:
            return int(self.cfg.critic_warmup)
        return self.default_critic_warmup if self.cfg.start == "base" else 0

    # ------------------------------------------------------------------ serialization
    def config_dict(self) -> dict:
        # `module`: where the method is defined, so a checkpoint of a method outside this package loads
        return {"method": self.name, **asdict(self.cfg), "resolved_scale": self.scale,
                "module": type(self).__module__}

    @classmethod
    def config_from_checkpoint(cls, d: dict) -> MethodConfig:
        """The config a saved steered policy was trained with, its data-derived scale pinned (loading
        needs no data)."""
        cfg = cls.Config.from_dict(d, strict=False)
        if cls.scale_field and d.get("resolved_scale") is not None:
            setattr(cfg, cls.scale_field, float(d["resolved_scale"]))
        return cfg

    # ------------------------------------------------------------------ helpers
    def _stat(self, key: str, option: str) -> float:
        if key not in self.stats:
            raise UserError(f"{self.name}: the scale rule needs the data statistic {key!r}, which this base "
                            f"policy's checkpoint does not record; pass {option} explicitly")
        return float(self.stats[key])

    def _noise(self, obs: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        # drawn on the (CPU) generator, then put where the observation is (a no-op on the CPU)
        return torch.randn((batch_size(obs), *self.policy.noise_shape), generator=gen).to(obs_device(obs))


REGISTRY = Registry("steering method", group="steerlab.steering_methods")
"""name -> SteeringMethod class; a pip package adds one through the entry-point group (docs/steering.md)."""


def register(cls: type[SteeringMethod]) -> type[SteeringMethod]:
    """Class decorator: make a method available by its `name` (CLI `--method`, checkpoints)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    return REGISTRY.add(cls.name, cls)


def method_class(name: str, module: str | None = None) -> type[SteeringMethod]:
    """The registered method `name`; `module` (recorded in checkpoints) is imported first if it is not."""
    if name not in REGISTRY and module:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            raise UserError(f"steering method {name!r} is defined in {module!r}, which cannot be imported ({err})") from err
    return REGISTRY.lookup(name)


def make_adapter(policy, method: str, options: dict | MethodConfig | None = None,
                 stats: dict | None = None) -> SteeringMethod:
    """The steering method `method` on `policy`; `options` its config (a dict is validated strictly)."""
    cls = method_class(method)
    cfg = options if isinstance(options, MethodConfig) else cls.Config.from_dict(options or {})
    return cls(policy, cfg, stats)
