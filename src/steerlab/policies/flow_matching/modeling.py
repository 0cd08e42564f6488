"""Chunked flow-matching policy over state (and optionally camera) observations, with an optional plug-in VIB.

obs ─norm─► encoder ─► e ─┬──────────────────────────────► condition (plain imitation policy)
                          └─► VIB: μ(+λΔz) ─► dec ─► ê ──► condition (deployed base / ZPRL)
condition + noise ε ─► Euler-integrated velocity field ─► normalized action chunk ─► unnormalize

With `cameras` set, obs is a dict (`steerlab.core.observations`): each camera's image goes through
the vision encoder (flow_matching/vision.py) and the features are concatenated with the normalized state
before the encoder MLP, so e (and the VIB on it) is the fused embedding.

Steering hooks (used by the online-RL adapters, never by the policy itself):
`noise=` (DSRL picks ε), `latent_residual=` (ZPRL shifts z), `embedding_residual=` (ablation shifts e).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from steerlab.core.devices import to_device
from steerlab.core.errors import UserError
from steerlab.core.observations import STATE_KEY, ObservationSpec, batch_size, to_policy_obs
from steerlab.policies.backbones import mlp
from steerlab.policies.flow_matching.configuration import FlowPolicyConfig
from steerlab.policies.flow_matching.sampler import euler_sample, euler_times
from steerlab.policies.flow_matching.vision import CameraEncoders
from steerlab.policies.normalize import Normalizer
from steerlab.policies.vib import VIB, gaussian_kl


def _numeric_tensor(value, what: str) -> torch.Tensor:
    """float32 tensor of `value`, refusing strings, objects and booleans with a one-line error."""
    if torch.is_tensor(value):
        if value.dtype == torch.bool or value.is_complex():
            raise UserError(f"{what} must hold real numbers, got a {value.dtype} tensor")
        return value.detach().to(torch.float32)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as err:  # ragged lists
        raise UserError(f"{what} is not a numeric array ({err})") from err
    if arr.dtype.kind not in "fiu":
        raise UserError(f"{what} must hold real numbers, got dtype {arr.dtype}")
    return torch.as_tensor(arr.astype(np.float32, copy=False))


def _finite_or_raise(x: torch.Tensor, what: str) -> torch.Tensor:
    if not bool(torch.isfinite(x).all()):
        raise UserError(f"{what} is NaN or inf (the inputs that produced it were out of range or corrupt)")
    return x


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
    ang = 100.0 * t[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


class VelocityNet(nn.Module):
    """MLP velocity field v(x_t, t | c) over a flattened action chunk."""

    def __init__(self, cfg: FlowPolicyConfig):
        super().__init__()
        self.cfg = cfg
        x_dim = cfg.horizon * cfg.action_dim
        cond_dim = cfg.embed_dim + cfg.time_embed_dim
        self.film = cfg.conditioning == "film"
        self.inp = nn.Linear(x_dim if self.film else x_dim + cond_dim, cfg.hidden)
        self.layers = nn.ModuleList(nn.Linear(cfg.hidden, cfg.hidden) for _ in range(cfg.velocity_depth))
        if self.film:
            self.film_proj = nn.Sequential(nn.Linear(cond_dim, cfg.hidden), nn.GELU(),
                                           nn.Linear(cfg.hidden, 2 * cfg.hidden * cfg.velocity_depth))
            nn.init.zeros_(self.film_proj[-1].weight)  # start as an unmodulated MLP
            nn.init.zeros_(self.film_proj[-1].bias)
        self.out = nn.Linear(cfg.hidden, x_dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                t_embed: torch.Tensor | None = None) -> torch.Tensor:
        """`t_embed`: `timestep_embedding(t)` if the caller has it already (sampling reuses it across calls)."""
        shape = x.shape
        x = x.reshape(shape[0], -1)
        if t_embed is None:
            t_embed = timestep_embedding(t, self.cfg.time_embed_dim)
        c = torch.cat([cond, t_embed], dim=-1)
        if self.film:
            h = self.act(self.inp(x))
            gb = self.film_proj(c).chunk(2 * len(self.layers), dim=-1)
            for i, layer in enumerate(self.layers):
                h = self.act(layer(h)) * (1.0 + gb[2 * i]) + gb[2 * i + 1]
        else:
            h = self.act(self.inp(torch.cat([x, c], dim=-1)))
            for layer in self.layers:
                h = self.act(layer(h))
        return self.out(h).reshape(shape)


class FlowMatchingPolicy(nn.Module):
    policy_type = "flow_matching"

    def __init__(self, cfg: FlowPolicyConfig):
        super().__init__()
        self.config = cfg
        self.obs_norm = Normalizer(cfg.obs_dim)
        self.action_norm = Normalizer(cfg.action_dim)
        vision_dim = len(cfg.cameras) * cfg.vision_features  # image features fused with the state (0: none)
        self.encoder = mlp(cfg.obs_dim + vision_dim, cfg.hidden, cfg.embed_dim, depth=cfg.encoder_depth)
        self.velocity = VelocityNet(cfg)
        self.vib = VIB(cfg.embed_dim, cfg.latent_dim, cfg.vib_hidden, cfg.vib_depth,
                       cfg.vib_stochastic) if cfg.use_vib else None
        # built last: a state-only policy draws the same initial weights from the same seed as before cameras
        self.vision = CameraEncoders(cfg) if cfg.cameras else None
        self._queue: list[np.ndarray] = []
        self._t_embeds: dict[tuple, list[torch.Tensor]] = {}  # sampling's time embeddings (see generate)

    # ----------------------------------------------------------------- steerable-policy protocol
    # (policies/protocol.py: sizes, sample_chunk, noise_shape, embed, chunk_from_embedding, vib)
    @property
    def obs_dim(self) -> int:
        return self.config.obs_dim

    @property
    def action_dim(self) -> int:
        return self.config.action_dim

    @property
    def horizon(self) -> int:
        return self.config.horizon

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def n_action_steps(self) -> int:
        return self.config.n_action_steps

    @property
    def chunk_shape(self) -> tuple[int, int]:
        return (self.config.horizon, self.config.action_dim)

    noise_shape = chunk_shape

    @property
    def observation_spec(self) -> ObservationSpec:
        c = self.config
        return ObservationSpec(c.obs_dim, tuple(c.cameras), tuple(c.image_size))

    @property
    def rl_feature_dim(self) -> int:
        return self.config.obs_dim + (self.config.embed_dim if self.vision is not None else 0)

    def rl_features(self, obs) -> torch.Tensor:
        """What an RL actor sees in place of obs: the normalized state, and for a camera policy the frozen
        fused embedding e before it (never pixels; the replay buffer stores these)."""
        if self.vision is None:
            return self.normalize_obs(obs)
        return torch.cat([self.embed(obs), self.normalize_obs(obs[STATE_KEY])], dim=-1)

    def sample_chunk(self, obs: torch.Tensor, noise: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Raw observations (B, obs_dim) -> action chunks in env units (B, horizon, action_dim), from `noise`."""
        return self.chunk_from_embedding(self.condition(self.embed(obs)), noise, generator)

    def chunk_from_embedding(self, e: torch.Tensor, noise: torch.Tensor | None = None,
                             generator: torch.Generator | None = None) -> torch.Tensor:
        """The generator conditioned on `e` (a replacement for what `condition` would give), in env units."""
        return self.unnormalize_actions(self.generate(e, noise, generator))

    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        return self.obs_norm.normalize(obs)

    # ----------------------------------------------------------------- parameters by role
    def imitation_parameters(self) -> list[nn.Parameter]:
        """Encoders (state and cameras) + generator: what behaviour cloning trains and the VIB must never touch."""
        vision = list(self.vision.parameters()) if self.vision is not None else []
        return list(self.encoder.parameters()) + list(self.velocity.parameters()) + vision

    def vib_parameters(self) -> list[nn.Parameter]:
        return list(self.vib.parameters()) if self.vib is not None else []

    # ----------------------------------------------------------------- inputs
    def _as_obs_tensor(self, obs, single: bool = False) -> torch.Tensor:
        """Validated float32 (B, obs_dim) tensor (a dict of tensors for a camera policy); `single`: exactly one
        observation (B = 1)."""
        if self.vision is not None:
            x = to_policy_obs(obs, self.observation_spec)
            if single and batch_size(x) != 1:
                raise UserError(f"select_action takes one observation; got a batch of {batch_size(x)} "
                                f"(use predict_chunk for batches)")
            return to_device(x, self.obs_norm.mean.device)  # where the weights are (a no-op on the CPU)
        x = _numeric_tensor(obs, "observation")
        d = self.config.obs_dim
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != d:
            raise UserError(f"observation must have shape ({d},) or (batch, {d}); got {tuple(x.shape)}")
        if single and x.shape[0] != 1:
            raise UserError(f"select_action takes one observation of shape ({d},); got a batch of {x.shape[0]} "
                            f"(use predict_chunk for batches)")
        if not torch.isfinite(x).all():
            raise UserError("observation contains NaN or inf")
        return x.to(self.obs_norm.mean.device)

    # ----------------------------------------------------------------- building blocks
    def embed(self, obs, generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalized observation -> embedding e (obs already a float tensor of shape (B, obs_dim), or for a
        camera policy a converted dict; `generator` draws the random crops in training mode)."""
        if self.vision is None:
            return self.encoder(self.obs_norm.normalize(obs))
        state = self.obs_norm.normalize(obs[STATE_KEY])
        return self.encoder(torch.cat([state, self.vision(obs, generator)], dim=-1))

    def latent(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of the bottleneck latent for embedding e."""
        if self.vib is None:
            raise ValueError("this policy has no VIB (use_vib=False); train one with `pretrain --vib-only`")
        return self.vib.posterior(e)

    def condition(self, e: torch.Tensor, latent_residual: torch.Tensor | None = None,
                  embedding_residual: torch.Tensor | None = None, through_vib: bool | None = None) -> torch.Tensor:
        """What the generator is conditioned on: dec(μ + residual) through the VIB, else e (+ residual).

        `through_vib=None` follows the config (`act_through_vib`); False forces the raw-embedding path.
        """
        if through_vib is None:
            through_vib = self.vib is not None and self.config.act_through_vib
        if through_vib:
            if embedding_residual is not None:
                raise ValueError("embedding_residual needs act_through_vib=False (it bypasses the bottleneck)")
            z, _ = self.latent(e)
            if latent_residual is not None:
                z = z + latent_residual
            return self.vib.decode(z)
        if latent_residual is not None:
            raise ValueError("latent_residual needs a trained VIB with act_through_vib=True")
        return e if embedding_residual is None else e + embedding_residual

    def generate(self, cond: torch.Tensor, noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Integrate the flow from noise to a *normalized* chunk (B, horizon, action_dim).

        Every input and the result are checked: a NaN noise, condition or chunk is an error, never an action.
        """
        cfg = self.config
        shape = (cond.shape[0], cfg.horizon, cfg.action_dim)
        _finite_or_raise(cond, "the generator's conditioning (embedding)")
        if noise is None:
            # drawn where the generator lives, then moved (a CPU generator serves a policy on any device)
            noise = torch.randn(shape, generator=generator, dtype=cond.dtype,
                                device=generator.device if generator is not None else cond.device).to(cond.device)
        else:
            noise = _numeric_tensor(noise, "noise").to(cond.device, cond.dtype)
            if noise.numel() != math.prod(shape):
                raise UserError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
            noise = _finite_or_raise(noise.reshape(shape), "noise")
        # the time embeddings depend on the batch size alone: computed once per size, exactly as the
        # velocity net would compute them at each step (about a third of the sampler's small ops at batch 1-8)
        embeds = iter(self._time_embeddings(shape[0], cond.dtype, cond.device))
        chunk = euler_sample(lambda x, t: self.velocity(x, t, cond, next(embeds)), noise, cfg.num_inference_steps)
        return _finite_or_raise(chunk, "the generated action chunk")

    def _time_embeddings(self, batch: int, dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
        """`timestep_embedding(t)` for each time `euler_sample` visits, one (batch, dim) tensor per step."""
        key = (batch, self.config.num_inference_steps, dtype, device)
        if key not in self._t_embeds:
            if len(self._t_embeds) >= 64:  # many batch sizes (an unusual caller): start afresh
                self._t_embeds.clear()
            with torch.inference_mode(False), torch.no_grad():  # plain tensors, whatever mode the caller is in
                self._t_embeds[key] = [timestep_embedding(t, self.config.time_embed_dim)
                                       for t in euler_times(batch, self.config.num_inference_steps, dtype, device)]
        return self._t_embeds[key]

    def unnormalize_actions(self, chunk: torch.Tensor) -> torch.Tensor:
        return self.action_norm.unnormalize(chunk).clamp(-1.0, 1.0)

    # ----------------------------------------------------------------- acting
    @torch.no_grad()
    def predict_chunk(self, obs, *, noise=None, latent_residual=None, embedding_residual=None,
                      generator: torch.Generator | None = None) -> np.ndarray:
        """Action chunk(s) in environment units, shape (B, horizon, action_dim). Inputs are checked each call."""
        x = self._as_obs_tensor(obs)
        b = batch_size(x)
        latent_residual = self._residual(latent_residual, "latent_residual", b, self.config.latent_dim)
        embedding_residual = self._residual(embedding_residual, "embedding_residual", b, self.config.embed_dim)
        dev = self.obs_norm.mean.device
        latent_residual, embedding_residual = (None if r is None else r.to(dev)
                                               for r in (latent_residual, embedding_residual))
        cond = self.condition(self.embed(x), latent_residual, embedding_residual)
        return self.unnormalize_actions(self.generate(cond, noise, generator)).cpu().numpy()

    @staticmethod
    def _residual(value, what: str, batch: int, dim: int) -> torch.Tensor | None:
        if value is None:
            return None
        r = _numeric_tensor(value, what)
        if r.ndim == 1:
            r = r[None]
        if r.ndim != 2 or r.shape[1] != dim or r.shape[0] not in (1, batch):
            raise UserError(f"{what} must have shape ({dim},) or ({batch}, {dim}); got {tuple(r.shape)}")
        return _finite_or_raise(r, what)

    @torch.no_grad()
    def select_action(self, obs, *, noise=None, latent_residual=None, key=None,
                      generator: torch.Generator | None = None) -> np.ndarray:
        """One action for one observation; re-plans every `n_action_steps` calls (call `reset()`
        between episodes). `noise` / `latent_residual` steer the chunk generated at a re-plan.

        The observation is checked on *every* call, also when the next action comes from the queue:
        a NaN, string, wrongly shaped or batched observation is an error, never a queued action.
        """
        if key is not None:
            raise UserError("this policy is not keyed; personalize it with `steerlab personalize`")
        x = self._as_obs_tensor(obs, single=True)
        if not self._queue:
            chunk = self.predict_chunk(x, noise=noise, latent_residual=latent_residual, generator=generator)[0]
            self._queue = list(chunk[: self.config.n_action_steps])
        return self._queue.pop(0)

    def reset(self) -> None:
        self._queue = []

    # ----------------------------------------------------------------- training losses
    def flow_loss(self, cond: torch.Tensor, chunk: torch.Tensor, generator: torch.Generator | None = None,
                  velocity: nn.Module | None = None) -> torch.Tensor:
        """Rectified-flow loss: x_t = (1−t)a + tε, regress v(x_t, t | c) onto ε − a."""
        # drawn on the CPU generator, then moved: the same numbers on every device (a no-op on the CPU)
        eps = torch.randn(chunk.shape, generator=generator).to(chunk.device)
        t = torch.rand(chunk.shape[0], generator=generator).to(chunk.device)
        x_t = (1 - t)[:, None, None] * chunk + t[:, None, None] * eps
        v = (velocity or self.velocity)(x_t, t, cond)
        return (v - (eps - chunk)).pow(2).mean()

    def _detached_velocity(self):
        params = {k: v.detach() for k, v in self.velocity.named_parameters()}
        return lambda x, t, c: functional_call(self.velocity, params, (x, t, c))

    def vib_loss(self, e: torch.Tensor, chunk: torch.Tensor, generator: torch.Generator | None = None):
        """β·KL + w·‖dec(z) − e‖² + flow loss of the *detached* generator conditioned on dec(z)."""
        e = e.detach()
        mu, logvar = self.vib.posterior(e)
        z = self.vib.sample(mu, logvar, generator)
        e_hat = self.vib.decode(z)
        kl = gaussian_kl(mu, logvar).mean()
        recon = (e_hat - e).pow(2).sum(-1).mean()
        fm = self.flow_loss(e_hat, chunk, generator, velocity=self._detached_velocity())
        cfg = self.config
        return fm + cfg.vib_beta * kl + cfg.vib_recon_weight * recon, {"vib_flow": fm, "kl": kl, "recon": recon}

    def compute_loss(self, obs: torch.Tensor, chunk: torch.Tensor, train_policy: bool = True,
                     train_vib: bool = True, generator: torch.Generator | None = None):
        """Loss for a batch of raw observations (B, obs_dim) (or a converted camera dict) and raw action
        chunks (B, H, A)."""
        chunk = self.action_norm.normalize(chunk)
        with torch.set_grad_enabled(train_policy):
            e = self.embed(obs) if self.vision is None else self.embed(obs, generator)
        logs: dict[str, torch.Tensor] = {}
        total = torch.zeros(())
        if train_policy:
            fm = self.flow_loss(e, chunk, generator)
            total = total + fm
            logs["flow"] = fm
        if train_vib and self.vib is not None:
            v, vlogs = self.vib_loss(e, chunk, generator)
            total = total + v
            logs.update(vlogs)
        logs["loss"] = total
        return total, {k: float(v.detach()) for k, v in logs.items()}
