"""A steered policy: frozen base + steering method + the SAC actor acting deterministically.

It is a full policy (`reset`, `select_action`, `predict_chunk`, and the protocol's `sample_chunk`), saved
as a self-describing checkpoint that holds a copy of its base checkpoint, so `core.checkpoint.load_policy`
rebuilds it like any other. Format: config `{"steering": {"method": ..., <options>, "resolved_scale"},
"sac", "obs_dim", "act_dim", "base": <the base checkpoint's config.json>, "env": <env spec>, "sampler_noise_scale",
"released", "release_gate"}`, tensors `base.*` (the base checkpoint's tensors) and `actor.*`.

`released`: "steered" (the default, and what older checkpoints mean) acts through the steering method; "base"
acts exactly as the frozen base (train/finetune/gate.py released it because the steered policy scored below the
base); the actor is kept either way, so `policy.released = "steered"` brings the steering back.
"""

from __future__ import annotations

import numpy as np
import torch

from steerlab.core.checkpoint import CheckpointError, build_policy, load_state_strict, save_checkpoint
from steerlab.core.devices import move_policy, policy_device, to_device
from steerlab.core.observations import batch_size
from steerlab.policies.protocol import as_policy_obs, observation_spec
from steerlab.rl.steering.base import SteeringMethod, method_class

RELEASED = ("steered", "base")


class SteeredPolicy:
    policy_type = "steered"

    def __init__(self, base, adapter: SteeringMethod, sac, env_spec: dict | None = None,
                 base_meta: dict | None = None, base_tensors: dict | None = None, noise_scale: float = 1.0,
                 released: str = "steered", release_gate: dict | None = None):
        self.base, self.adapter, self.sac = base, adapter, sac
        if released not in RELEASED:
            raise CheckpointError(f"released must be one of {', '.join(RELEASED)}, got {released!r}")
        self.released = released
        self.release_gate = release_gate  # the gate's record (train/finetune/gate.py), or None
        # the frozen sampler's noise scale it was trained with (the sampler-mode rule's choice): what it draws when
        # no noise is given, and what `steerlab evaluate` uses by default
        self.sampler_noise_scale = float(noise_scale)
        self.env_spec = dict(env_spec or {})
        self.base_meta, self.base_tensors = base_meta, base_tensors  # what `save_steered_policy` copies
        self.obs_dim, self.action_dim = int(base.obs_dim), int(base.action_dim)
        self.horizon, self.n_action_steps = int(base.horizon), int(base.n_action_steps)
        self.noise_shape = tuple(getattr(base, "noise_shape", None) or (self.horizon, self.action_dim))
        self.observation_spec = observation_spec(base)
        self._queue: list[np.ndarray] = []

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        return self.noise_shape

    @property
    def device(self) -> torch.device:
        return policy_device(self.base)

    def to(self, device) -> SteeredPolicy:
        """Base and actor on `device` (only the actor acts: the critics stay where they are)."""
        move_policy(self.base, device)
        self.sac.actor.to(device)
        self.sac.device = torch.device(device)
        return self

    @torch.no_grad()
    def sample_chunk(self, obs: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:  # noise that is given is used as given (evaluations scale their own)
            noise = self.sampler_noise_scale * torch.randn((batch_size(obs), *self.noise_shape))
        dev = self.device  # the loop and evaluation draw noise on the CPU; the policy may sit on a GPU
        obs, noise = to_device(obs, dev), noise.to(dev)
        if self.released == "base":  # the frozen base exactly, with the same noise
            return self.base.sample_chunk(obs, noise)
        feats = self.adapter.features(obs, train=False, noise=noise)
        action = torch.as_tensor(self.sac.act(feats, deterministic=True)).to(dev)
        return self.adapter.chunk(obs, feats, action, noise)

    def predict_chunk(self, obs, *, noise=None) -> np.ndarray:
        """Action chunk(s) in environment units, shape (B, horizon, action_dim)."""
        return self.sample_chunk(as_policy_obs(self.base, obs), noise).cpu().numpy()

    def select_action(self, obs, *, noise=None) -> np.ndarray:
        """One action for one observation; re-plans every `n_action_steps` calls (`reset()` between episodes)."""
        if not self._queue:
            self._queue = list(self.predict_chunk(obs, noise=noise)[0, : self.n_action_steps])
        return self._queue.pop(0)

    def reset(self) -> None:
        self._queue = []


def save_steered_policy(policy: SteeredPolicy, folder, sac_config: dict):
    if policy.base_meta is None or policy.base_tensors is None:
        raise CheckpointError("a steered policy needs its base checkpoint (meta + tensors) to be saved")
    tensors = {f"base.{k}": v for k, v in policy.base_tensors.items()}
    tensors.update({f"actor.{k}": v for k, v in policy.sac.actor.state_dict().items()})
    config = {"steering": policy.adapter.config_dict(), "sac": sac_config, "obs_dim": policy.adapter.obs_dim,
              "act_dim": policy.adapter.act_dim, "base": policy.base_meta, "env": policy.env_spec,
              "sampler_noise_scale": policy.sampler_noise_scale, "released": policy.released,
              "release_gate": policy.release_gate}
    return save_checkpoint(folder, SteeredPolicy.policy_type, config, tensors)


def load_steered_policy(meta: dict, tensors: dict, folder) -> SteeredPolicy:
    cfg = meta["config"]
    base_meta = cfg["base"]
    base_tensors = {k[5:]: v for k, v in tensors.items() if k.startswith("base.")}
    base = build_policy(base_meta, base_tensors, folder)
    actor = {k[6:]: v for k, v in tensors.items() if k.startswith("actor.")}
    return steered_from_parts(base, base_meta, cfg, actor, str(folder), base_tensors=base_tensors)


def steered_from_parts(base, base_meta: dict, cfg: dict, actor: dict, where: str,
                       base_tensors: dict | None = None) -> SteeredPolicy:
    """A steered policy from its base and its own parts: `cfg` holds `steering`, `sac`, `obs_dim`, `act_dim`
    (and optionally `env`, `sampler_noise_scale`), `actor` the SAC actor's tensors. What a steered checkpoint
    and a sealed steering part (steerlab.privacy.sealed.online) both hold beyond the base."""
    from steerlab.rl.sac import SAC, SACConfig

    cls = method_class(cfg["steering"]["method"], cfg["steering"].get("module"))
    adapter = cls(base, cls.config_from_checkpoint(cfg["steering"]), base_meta.get("latent_stats", {}))
    if (adapter.obs_dim, adapter.act_dim) != (cfg["obs_dim"], cfg["act_dim"]):
        raise CheckpointError(f"{where}: adapter sizes {(adapter.obs_dim, adapter.act_dim)} do not match "
                              f"the checkpoint's {(cfg['obs_dim'], cfg['act_dim'])}")
    sac = SAC(adapter.obs_dim, adapter.act_dim, SACConfig(**cfg["sac"]), critic_action_fn=adapter.critic_action)
    load_state_strict(sac.actor, actor, where)
    return SteeredPolicy(base, adapter, sac, env_spec=cfg.get("env", {}), base_meta=base_meta,
                         base_tensors=base_tensors, noise_scale=cfg.get("sampler_noise_scale", 1.0),  # older: sampled
                         released=cfg.get("released", "steered"), release_gate=cfg.get("release_gate"))
