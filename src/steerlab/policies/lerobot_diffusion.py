"""A LeRobot `DiffusionPolicy` behind steerlab's steerable-policy protocol (needs `steerlab[lerobot]`).

    obs ─► LeRobot preprocessor (its normalization) ─► DiffusionModel._prepare_global_conditioning ─► e
    e, noise ─► DiffusionModel.conditional_sample (DDIM) ─► LeRobot postprocessor (unnormalize) ─► chunk

| protocol member             | LeRobot piece                                                          |
|-----------------------------|------------------------------------------------------------------------|
| `embed(obs)`                | `_prepare_global_conditioning` of the normalized observation history   |
| `chunk_from_embedding(e, ε)`| `conditional_sample(global_cond=e, noise=ε)`, unnormalized, from the current step |
| `sample_chunk(obs, ε)`      | the two above: exactly what `predict_action_chunk(batch, noise=ε)` computes |
| `noise_shape`               | `(config.horizon, action_dim)`: the diffusion sample's initial noise   |

Noise steering (dsrl) and embedding steering (zprl) assume the chunk is a deterministic function of the
initial noise, which holds for LeRobot's DDIM scheduler; a DDPM policy draws fresh noise at every
denoising step, so it exposes no `noise_shape` and can be steered by action-residual only.

Observation history. A diffusion policy sees its last `n_obs_steps` observations. The protocol passes one
flat vector per decision, so the wrapper reads the history from it:

* `history="stacked"` (default): the observation is the last `n_obs_steps` frames, oldest first,
  flattened; `with_history(env, n)` makes any Gymnasium env emit that (repeating the reset frame, as
  LeRobot pads), and `stack_history` builds it from a dataset's episodes (same padding).
* `history="repeat"`: the observation is the current frame only and fills every observation step, as
  LeRobot does at an episode's first step. Simpler, but a policy trained on real histories then sees
  slightly different inputs after the first step; it is exact when `n_obs_steps == 1`.

A frame is the concatenation of `obs_keys` (default: `observation.state`, then
`observation.environment_state` if the policy declares it). `aliases` feeds a declared key from another
one, e.g. a state-only policy that declares its state as environment state too (LeRobot's diffusion
config needs an image or an environment state): `aliases={"observation.environment_state":
"observation.state"}`.

Cameras. A policy with image input features (`observation.images.<camera>`, LeRobot's own vision backbone)
takes the protocol's camera observations (docs/protocol.md): a dict with `observation.state` and one
`observation.images.<camera>` per camera, uint8 HWC from envs and datasets, float32 CHW in [0, 1] inside
(`steerlab.core.observations.to_policy_obs`, applied once; `observation_spec` says what it sees). An image key
with another name (e.g. `observation.image`) is fed from a camera by an alias:
`aliases={"observation.image": "observation.images.top"}`. A camera observation is one frame per decision,
so its history is `"repeat"` (the default for such a policy; exact when `n_obs_steps == 1`). The RL actor
sees `rl_features(obs)`: the frozen global conditioning `e` (image features + state) and the normalized
state, never pixels. The LeRobot policy stays in eval mode (its random crop, if any, is never drawn).

The wrapper never trains or modifies the LeRobot policy: it is put in eval mode and only read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from steerlab.core.errors import UserError
from steerlab.core.observations import IMAGE_PREFIX, ObservationSpec, is_dict_obs, to_policy_obs

OBS_STATE = "observation.state"
OBS_ENV_STATE = "observation.environment_state"
OBS_IMAGES = "observation.images"  # LeRobot's stacked cameras (B, n_obs_steps, n_cameras, 3, H, W)
HISTORY_MODES = ("stacked", "repeat")


def _require_lerobot():
    try:
        import lerobot  # noqa: F401
        from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    except ImportError as err:  # one line, naming the fix
        raise UserError(f"LeRobot policies need the lerobot extra (Python >= 3.12): "
                        f"pip install 'steerlab[lerobot]' ({err})") from err
    return DiffusionPolicy


class LeRobotDiffusionPolicy(nn.Module):
    """Protocol levels action, noise (DDIM only) and embedding for a LeRobot DiffusionPolicy on state and,
    optionally, cameras."""

    def __init__(self, policy, preprocessor, postprocessor, obs_keys: tuple[str, ...] | None = None,
                 aliases: dict[str, str] | None = None, history: str | None = None, env: dict | None = None):
        super().__init__()
        cfg = policy.config
        if getattr(cfg, "type", "diffusion") != "diffusion" or not hasattr(policy, "diffusion"):
            raise UserError(f"expected a LeRobot DiffusionPolicy, got {type(policy).__name__}")
        self.aliases = dict(aliases or {})
        self.image_keys = tuple(cfg.image_features or ())
        history = history or ("repeat" if self.image_keys else "stacked")
        if history not in HISTORY_MODES:
            raise UserError(f"history must be one of {HISTORY_MODES}, got {history!r}")
        self.n_obs_steps = int(cfg.n_obs_steps)
        declared = [k for k in (OBS_STATE, OBS_ENV_STATE) if k in cfg.input_features]
        if self.image_keys:
            self.observation_spec = self._camera_spec(cfg, history)
        self.obs_keys = tuple(obs_keys) if obs_keys else tuple(k for k in declared if k not in self.aliases)
        for key in declared:
            if key not in self.obs_keys and self.aliases.get(key) not in self.obs_keys:
                raise UserError(f"the policy needs {key!r}: list it in obs_keys or alias it to one of {self.obs_keys}")
        for key, src in self.aliases.items():
            if key in self.image_keys:
                continue
            if key not in cfg.input_features or src not in cfg.input_features:
                raise UserError(f"alias {key!r} <- {src!r}: both must be input features of the policy "
                                f"({sorted(cfg.input_features)})")
            if cfg.input_features[src].shape != cfg.input_features[key].shape:
                raise UserError(f"alias {key!r} <- {src!r}: shapes {cfg.input_features[key].shape} and "
                                f"{cfg.input_features[src].shape} differ")
        if self.image_keys and self.obs_keys != (OBS_STATE,):
            raise UserError(f"a camera policy reads its state from {OBS_STATE!r} only; got {self.obs_keys} "
                            f"(alias the others to it, e.g. aliases={{{OBS_ENV_STATE!r}: {OBS_STATE!r}}})")
        unknown = [k for k in self.obs_keys if k not in cfg.input_features]
        if unknown:
            raise UserError(f"obs_keys {unknown} are not input features of the policy ({sorted(cfg.input_features)})")

        self.policy = policy.eval()
        self.preprocessor, self.postprocessor = preprocessor, postprocessor
        self.history = history
        self.env_spec = dict(env or {})
        self.key_sizes = {k: int(cfg.input_features[k].shape[0]) for k in self.obs_keys}
        self.frame_dim = sum(self.key_sizes.values())
        self.obs_dim = self.frame_dim * (self.n_obs_steps if history == "stacked" else 1)
        self.action_dim = int(cfg.action_feature.shape[0])
        # the diffusion sample spans n_obs_steps - 1 past steps too; the chunk starts at the current one
        self.horizon = int(cfg.horizon) - (self.n_obs_steps - 1)
        self.n_action_steps = int(cfg.n_action_steps)
        self.deterministic_given_noise = cfg.noise_scheduler_type == "DDIM"
        with torch.no_grad():
            self.embed_dim = int(self.embed(self._zero_obs()).shape[1])

    def _camera_spec(self, cfg, history: str) -> ObservationSpec:
        """What a camera policy observes; refuses what one frame per decision cannot feed (one line each)."""
        if history == "stacked" and self.n_obs_steps > 1:
            raise UserError(f"a camera observation is one frame per decision: use history='repeat' (the current "
                            f"frame fills all n_obs_steps={self.n_obs_steps} steps) or a policy with n_obs_steps=1")
        if OBS_STATE not in cfg.input_features:
            raise UserError(f"the policy declares cameras but no {OBS_STATE!r}; the protocol's camera "
                            f"observations carry one")
        cameras = []
        for key in self.image_keys:
            src = self.aliases.get(key, key)
            if not src.startswith(IMAGE_PREFIX) or src == IMAGE_PREFIX:
                raise UserError(f"image feature {key!r} has no camera name: feed it from one with "
                                f"aliases={{{key!r}: '{IMAGE_PREFIX}<camera>'}}")
            if src[len(IMAGE_PREFIX):] not in cameras:
                cameras.append(src[len(IMAGE_PREFIX):])
        c, h, w = (int(v) for v in cfg.image_features[self.image_keys[0]].shape)
        if c != 3:
            raise UserError(f"image feature {self.image_keys[0]!r} has {c} channels; the protocol's cameras are RGB (3)")
        return ObservationSpec(int(cfg.input_features[OBS_STATE].shape[0]), tuple(cameras), (h, w))

    def train(self, mode: bool = True):
        """Only the wrapper's mode changes: the LeRobot policy stays in eval mode (frozen, no random crop)."""
        super().train(mode)
        self.policy.eval()
        return self

    @property
    def has_cameras(self) -> bool:
        return bool(self.image_keys)

    @property
    def rl_feature_dim(self) -> int:
        return self.embed_dim + self.frame_dim if self.has_cameras else self.obs_dim

    # ------------------------------------------------------------------ protocol
    @property
    def noise_shape(self) -> tuple[int, int]:
        if not self.deterministic_given_noise:
            # hasattr() is False: noise/embedding steering then refuse this policy with a clear error
            raise AttributeError("noise_shape: a DDPM diffusion policy is not deterministic given its initial "
                                 "noise; build it with noise_scheduler_type='DDIM' for dsrl/zprl")
        return (int(self.policy.config.horizon), self.action_dim)

    def embed(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, obs_dim) raw observations -> (B, embed_dim) global conditioning of the denoiser."""
        return self._condition(self._normalized_batch(obs))

    def chunk_from_embedding(self, e: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The denoiser conditioned on `e`, from initial noise `noise` (B, *noise_shape): (B, horizon, A)
        actions in env units, starting at the current step. Differentiable in `e`."""
        if noise is not None:
            noise = torch.as_tensor(noise, dtype=e.dtype)
            if tuple(noise.shape) != (e.shape[0], *self.noise_shape):
                raise UserError(f"noise must have shape {(e.shape[0], *self.noise_shape)}, got {tuple(noise.shape)}")
        full = self.policy.diffusion.conditional_sample(e.shape[0], global_cond=e, noise=noise)
        actions = self.postprocessor(full)
        return actions[:, self.n_obs_steps - 1:]

    def sample_chunk(self, obs: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.chunk_from_embedding(self.embed(obs), noise)

    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """The observation as the policy sees it (LeRobot's normalization), flattened to (B, obs_dim); for a
        camera observation, the normalized state of the current step (B, state_dim)."""
        batch = self._normalized_batch(obs)
        if self.has_cameras:
            return batch[OBS_STATE][:, -1]
        frames = torch.cat([batch[k] for k in self.obs_keys], dim=-1)  # (B, n_obs_steps, frame_dim)
        return frames.flatten(1) if self.history == "stacked" else frames[:, -1]

    def rl_features(self, obs) -> torch.Tensor:
        """What an RL actor sees in place of obs: for a camera policy the frozen global conditioning e (image
        features + state over the observation steps) and the normalized current state, never pixels."""
        if not self.has_cameras:
            return self.normalize_obs(obs)
        batch = self._normalized_batch(obs)
        return torch.cat([self._condition(batch), batch[OBS_STATE][:, -1]], dim=-1)

    # ------------------------------------------------------------------ acting (numpy in, numpy out)
    def reset(self) -> None:
        """Stateless: the history travels in the observation."""

    @torch.no_grad()
    def predict_chunk(self, obs, *, noise=None) -> np.ndarray:
        """Raw observation(s) (flat, or a camera dict with uint8 HWC frames) -> (B, horizon, action_dim)."""
        return self.sample_chunk(self._as_obs(obs), noise).numpy()

    @torch.no_grad()
    def select_action(self, obs) -> np.ndarray:
        """The first action of a freshly sampled chunk (callers that execute chunks use predict_chunk)."""
        return self.predict_chunk(obs)[:, 0]

    # ------------------------------------------------------------------ helpers
    def _as_obs(self, obs):
        """(B, obs_dim) float32, or for a camera policy the converted dict (float32 CHW images in [0, 1])."""
        if self.has_cameras:
            return to_policy_obs(obs, self.observation_spec)
        if is_dict_obs(obs):
            raise UserError(f"this policy sees no cameras: pass a flat observation of shape ({self.obs_dim},)")
        x = obs if torch.is_tensor(obs) else torch.as_tensor(np.asarray(obs, dtype=np.float32))
        x = x.to(torch.float32)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise UserError(f"observation must have shape ({self.obs_dim},) or (batch, {self.obs_dim}); "
                            f"got {tuple(x.shape)}")
        return x

    def _zero_obs(self):
        if not self.has_cameras:
            return torch.zeros(1, self.obs_dim)
        h, w = self.observation_spec.image_size
        return {OBS_STATE: torch.zeros(1, self.frame_dim),
                **{IMAGE_PREFIX + c: torch.zeros(1, 3, h, w) for c in self.observation_spec.cameras}}

    def _condition(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.has_cameras:  # LeRobot stacks its cameras into one (B, n_obs_steps, n_cameras, 3, H, W) entry
            batch = {**batch, OBS_IMAGES: torch.stack([batch[k] for k in self.image_keys], dim=-4)}
        return self.policy.diffusion._prepare_global_conditioning(batch)

    def _normalized_batch(self, obs) -> dict[str, torch.Tensor]:
        obs = self._as_obs(obs)
        if self.has_cameras:
            n = self.n_obs_steps
            batch = {OBS_STATE: obs[OBS_STATE][:, None].expand(-1, n, -1)}
            for key in self.image_keys:
                batch[key] = obs[self.aliases.get(key, key)][:, None].expand(-1, n, -1, -1, -1)
            for key, src in self.aliases.items():
                if key not in self.image_keys:
                    batch[key] = batch[src]
            return self.preprocessor(batch)
        if self.history == "stacked":
            frames = obs.reshape(obs.shape[0], self.n_obs_steps, self.frame_dim)
        else:
            frames = obs[:, None].expand(-1, self.n_obs_steps, -1)
        batch, start = {}, 0
        for key, size in self.key_sizes.items():
            batch[key] = frames[..., start:start + size]
            start += size
        for key, src in self.aliases.items():
            batch[key] = batch[src]
        return self.preprocessor(batch)


# ---------------------------------------------------------------------- construction and history helpers

def load_lerobot_diffusion(path: str | Path, **wrapper_kwargs) -> LeRobotDiffusionPolicy:
    """Wrap a DiffusionPolicy saved by LeRobot (`policy.save_pretrained(dir)` and its pre/post-processors'
    `save_pretrained(dir)`, as `lerobot-train` writes them). `wrapper_kwargs` go to LeRobotDiffusionPolicy."""
    diffusion_policy = _require_lerobot()
    from lerobot.policies.factory import make_pre_post_processors

    path = Path(path)
    if not (path / "config.json").is_file():
        raise UserError(f"{path} is not a saved LeRobot policy (missing config.json)")
    policy = diffusion_policy.from_pretrained(str(path))
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(path),
                                         preprocessor_overrides={"device_processor": {"device": "cpu"}})
    return LeRobotDiffusionPolicy(policy, pre, post, **wrapper_kwargs)


def with_history(env, n_obs_steps: int):
    """A Gymnasium env whose observation is its last `n_obs_steps` observations, oldest first, flattened
    (the reset observation repeated until there are enough): the input of `history="stacked"`."""
    if n_obs_steps <= 1:
        return env
    from gymnasium.wrappers import FlattenObservation, FrameStackObservation

    return FlattenObservation(FrameStackObservation(env, n_obs_steps, padding_type="reset"))


def stack_history(observations: np.ndarray, episode_slices: list[slice], n_obs_steps: int) -> np.ndarray:
    """(N, D) per-frame observations -> (N, n_obs_steps * D) histories, oldest first, the first frame of
    each episode repeated before its start (LeRobot's padding of past frames)."""
    observations = np.asarray(observations, np.float32)
    out = np.empty((len(observations), n_obs_steps, observations.shape[1]), np.float32)
    for sl in episode_slices:
        t = np.arange(sl.start, sl.stop)
        idx = np.maximum(t[:, None] - np.arange(n_obs_steps - 1, -1, -1)[None], sl.start)
        out[sl] = observations[idx]
    return out.reshape(len(observations), -1)
