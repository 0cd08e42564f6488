"""The plug-in VIB: ZPRL's latent interface fitted post hoc on *any* embedding-steerable policy.

    obs ─► policy.embed ─► e ─► VIB enc ─► (μ, log σ²) ─► z ─► VIB dec ─► ê ─► policy.chunk_from_embedding

Only the VIB learns. Its loss, on observations from a dataset of the policy's task:
    action_weight · ‖chunk_from_embedding(ê, ε) − chunk_from_embedding(e, ε)‖²   (same noise ε)
  + beta · KL(q(z|e) ‖ N(0, I)) + recon_weight · ‖ê − e‖²
i.e. ê must make the frozen generator act as e does: the action-space analogue of the flow policy's
built-in VIB loss, which needs nothing but the protocol. Gradients are taken with respect to the VIB's
parameters only (`torch.autograd.grad`), so the wrapped policy's weights *and* their `.grad` stay
untouched. A generator that is not differentiable in e can still be fitted with `action_weight=0`
(reconstruction only).

`PluginVIBPolicy` is the wrapped policy plus its VIB: it implements the protocol up to the `latent`
level, and its checkpoint (`policy_type: plugin_vib`) holds a copy of the wrapped policy's checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from steerlab.core.checkpoint import CheckpointError, build_policy, load_state_strict, save_checkpoint
from steerlab.core.errors import UserError
from steerlab.core.observations import to_policy_obs
from steerlab.core.progress import progress_bar
from steerlab.policies.protocol import check_steerable, observation_spec
from steerlab.policies.vib import VIB, gaussian_kl

POLICY_TYPE = "plugin_vib"


@dataclass
class PluginVIBConfig:
    latent_dim: int = 8
    """Size of the bottleneck latent z (ZPRL's action space)."""
    vib_hidden: int = 256
    """Hidden width of the VIB encoder and decoder."""
    vib_depth: int = 3
    """Hidden layers of the VIB encoder and decoder."""
    vib_stochastic: bool = True
    """False: a deterministic autoencoder (ablation)."""
    vib_beta: float = 1e-4
    """Weight of KL(q(z|e) ‖ N(0, I))."""
    vib_recon_weight: float = 0.01
    """Weight of ‖ê − e‖²."""
    action_weight: float = 1.0
    """Weight of the action-matching loss through the frozen generator (0: reconstruction only)."""
    steps: int = 2000
    """Gradient steps."""
    batch_size: int = 256
    lr: float = 3e-4
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> PluginVIBConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown plug-in VIB option(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


class PluginVIBPolicy:
    """An embedding-steerable policy + a VIB over its embedding (protocol level `latent`)."""

    policy_type = POLICY_TYPE

    def __init__(self, policy, vib: VIB, base_meta: dict, base_tensors: dict, vib_config: PluginVIBConfig,
                 latent_stats: dict | None = None):
        check_steerable(policy, "embedding", "zprl")
        self.policy, self.vib = policy, vib.eval()
        self.base_meta, self.base_tensors = base_meta, base_tensors
        self.vib_config = vib_config
        self.latent_stats = dict(latent_stats or {})

    def __getattr__(self, name):  # everything else (sizes, sample_chunk, embed, reset, ...) is the policy's
        if name in ("policy", "__setstate__"):
            raise AttributeError(name)
        return getattr(self.policy, name)

    def to(self, device) -> PluginVIBPolicy:
        """The wrapped policy (when it can move) and the VIB on `device`."""
        fn = getattr(self.policy, "to", None)
        if callable(fn):
            fn(device)
        self.vib.to(device)
        return self

    @property
    def env_spec(self) -> dict:
        return dict(self.base_meta.get("config", {}).get("env", {}) or getattr(self.policy, "env_spec", None) or {})


@torch.no_grad()
def embed_observations(policy, observations) -> torch.Tensor:
    """`policy.embed` of N observations: a (N, obs_dim) array, or a dict of camera frames (uint8 HWC, converted
    and embedded 256 at a time, so N frames never exist as float at once)."""
    if isinstance(observations, dict):
        spec, n = observation_spec(policy), len(observations["observation.state"])
        if n == 0:
            raise UserError("observations are empty: the VIB needs observations of the policy's task")
        return torch.cat([policy.embed(to_policy_obs({k: v[i:i + 256] for k, v in observations.items()}, spec))
                          for i in range(0, n, 256)])
    obs = torch.as_tensor(np.asarray(observations, np.float32))
    if obs.ndim != 2 or obs.shape[1] != policy.obs_dim or len(obs) == 0:
        raise UserError(f"observations must have shape (N > 0, obs_dim={policy.obs_dim}); got {tuple(obs.shape)}")
    return policy.embed(obs)


@torch.no_grad()
def latent_stats(policy, observations) -> dict:
    """RMS of the embedding e and of the VIB latent μ over observations: they set the residual scales of
    ZPRL (λ) and of the embedding-residual ablation."""
    e = embed_observations(policy, observations)
    stats = {"e_rms": float(e.pow(2).mean().sqrt())}
    vib = getattr(policy, "vib", None)
    if vib is not None:
        mu, logvar = vib.posterior(e)
        stats.update(mu_rms=float(mu.pow(2).mean().sqrt()), mu_std=mu.std(0).tolist(),
                     posterior_std_mean=float((0.5 * logvar).exp().mean()))
    return stats


def fit_plugin_vib(policy, observations, cfg: PluginVIBConfig | None = None, base_meta: dict | None = None,
                   base_tensors: dict | None = None, progress: bool = True) -> PluginVIBPolicy:
    """Fit a VIB on `policy.embed(observations)`; the policy itself is never modified.

    `base_meta`/`base_tensors`: the policy's checkpoint (from `load_policy_source`) so the result can be
    saved; without them it can be used in memory only.
    """
    cfg = cfg or PluginVIBConfig()
    check_steerable(policy, "embedding", "zprl")
    e_all = embed_observations(policy, observations)  # flat states, or a dict with camera frames
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):  # initialise from the seed, leave the global RNG alone
        torch.manual_seed(cfg.seed)
        vib = VIB(int(policy.embed_dim), cfg.latent_dim, cfg.vib_hidden, cfg.vib_depth, cfg.vib_stochastic)
    params = list(vib.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    noise_shape = tuple(policy.noise_shape)
    for _ in progress_bar(range(cfg.steps), desc="fit plug-in VIB", disable=not progress, unit="step"):
        b = torch.randint(0, len(e_all), (min(cfg.batch_size, len(e_all)),), generator=gen)
        e = e_all[b]
        mu, logvar = vib.posterior(e)
        e_hat = vib.decode(vib.sample(mu, logvar, gen))
        loss = cfg.vib_beta * gaussian_kl(mu, logvar).mean() + cfg.vib_recon_weight * (e_hat - e).pow(2).sum(-1).mean()
        if cfg.action_weight > 0:
            noise = torch.randn((len(b), *noise_shape), generator=gen)
            with torch.no_grad():
                target = policy.chunk_from_embedding(e, noise)
            pred = policy.chunk_from_embedding(e_hat, noise)
            if not pred.requires_grad:
                raise UserError("chunk_from_embedding is not differentiable in e; fit with action_weight=0 "
                                "(reconstruction only)")
            loss = loss + cfg.action_weight * (pred - target).pow(2).mean()
        grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        opt.step()
        opt.zero_grad(set_to_none=True)
    vib.eval()
    out = PluginVIBPolicy(policy, vib, base_meta or {}, base_tensors or {}, cfg)
    out.latent_stats = latent_stats(out, observations)
    return out


def save_plugin_vib_policy(policy: PluginVIBPolicy, folder: str | Path, extra: dict | None = None) -> Path:
    if not policy.base_meta:
        raise CheckpointError("this plug-in VIB has no base checkpoint to copy; fit it on a policy loaded "
                              "with load_policy_source(<folder or module:factory>)")
    tensors = {f"vib.{k}": v for k, v in policy.vib.state_dict().items()}
    tensors.update({f"base.{k}": v for k, v in policy.base_tensors.items()})
    config = {"base": policy.base_meta, "vib": asdict(policy.vib_config), "embed_dim": int(policy.embed_dim)}
    return save_checkpoint(folder, POLICY_TYPE, config, tensors,
                           extra={"latent_stats": policy.latent_stats, **(extra or {})})


def load_plugin_vib_policy(meta: dict, tensors: dict, folder: Path) -> PluginVIBPolicy:
    cfg = meta["config"]
    try:
        vcfg = PluginVIBConfig.from_dict(cfg["vib"])
    except (KeyError, TypeError, UserError) as err:
        raise CheckpointError(f"{folder}: invalid plug-in VIB config ({err})") from err
    base_tensors = {k[5:]: v for k, v in tensors.items() if k.startswith("base.")}
    base = build_policy(cfg["base"], base_tensors, folder)
    vib = VIB(int(cfg["embed_dim"]), vcfg.latent_dim, vcfg.vib_hidden, vcfg.vib_depth, vcfg.vib_stochastic)
    load_state_strict(vib, {k[4:]: v for k, v in tensors.items() if k.startswith("vib.")}, str(folder))
    return PluginVIBPolicy(base, vib, cfg["base"], base_tensors, vcfg, meta.get("latent_stats", {}))
