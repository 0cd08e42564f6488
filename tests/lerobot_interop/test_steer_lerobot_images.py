"""An image-conditioned LeRobot DiffusionPolicy (one camera + state, LeRobot's own ResNet encoder, trained by
LeRobot's code on a dataset LeRobot wrote) behind the camera protocol: uint8 HWC frames in, LeRobot's own
prediction out; steered by zprl (plug-in VIB fitted post hoc), dsrl and action-residual on a tiny camera env,
the steered policy saved, loaded, and acting identically; the LeRobot weights stay bitwise unchanged.
A few decisions per method: this checks the plumbing, not learning."""

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import offline_hf  # noqa: F401  (before lerobot)
import pytest
import torch

from steerlab.core.checkpoint import load_policy
from steerlab.core.errors import UserError
from steerlab.core.observations import to_policy_obs
from steerlab.envs.registry import make_env, resolve_env

pytestmark = [pytest.mark.lerobot, pytest.mark.slow]
pytest.importorskip("lerobot", reason="needs the lerobot extra (Python >= 3.12): `make test-lerobot`")
pytest.importorskip("diffusers", reason="needs lerobot[diffusion]: `make test-lerobot`")

from tiny_diffusion import train_tiny_diffusion  # noqa: E402

from steerlab.policies.factory import load_policy_source  # noqa: E402
from steerlab.policies.lerobot_diffusion import load_lerobot_diffusion  # noqa: E402
from steerlab.policies.plugin_vib import PluginVIBConfig, fit_plugin_vib, save_plugin_vib_policy  # noqa: E402
from steerlab.policies.protocol import check_steerable  # noqa: E402
from steerlab.rl.sac import SACConfig  # noqa: E402
from steerlab.train.finetune import FinetuneConfig, Finetuner  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lerobot-v3"
SEED = 0
STATE, CAM = "observation.state", "observation.images.corner2"
# what a user writes: a policy factory and a camera env that gives LeRobot's names (uint8 HWC frames)
FACTORY = '''
import gymnasium as gym
import numpy as np

from steerlab.policies.lerobot_diffusion import load_lerobot_diffusion

POLICY_DIR = {policy_dir!r}
H, W = 12, 16


class PixelPoint(gym.Env):
    """A point moving towards a goal, seen by a 12x16 camera (red: the point, green: the goal)."""

    def __init__(self):
        self.observation_space = gym.spaces.Dict({{
            "observation.state": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
            "observation.images.corner2": gym.spaces.Box(0, 255, (H, W, 3), np.uint8)}})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)

    def _obs(self):
        img = np.zeros((H, W, 3), np.uint8)
        for p, channel in ((self.goal, 1), (self.pos, 0)):
            img[int((p[1] + 1) / 2 * (H - 1)), int((p[0] + 1) / 2 * (W - 1)), channel] = 255
        return {{"observation.state": np.concatenate([self.pos, self.goal]).astype(np.float32),
                "observation.images.corner2": img}}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.goal = self.np_random.uniform(-1, 1, (2, 2)).astype(np.float32)
        return self._obs(), {{"is_success": False}}

    def step(self, action):
        self.pos = np.clip(self.pos + 0.1 * np.clip(action[:2], -1, 1), -1, 1).astype(np.float32)
        dist = float(np.linalg.norm(self.pos - self.goal))
        return self._obs(), -dist, False, False, {{"is_success": dist < 0.1}}


def make_policy():
    return load_lerobot_diffusion(POLICY_DIR)  # a camera policy: history "repeat" by default


def make_env(**kwargs):
    return PixelPoint()
'''


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("steer_images")
    data = shutil.copytree(FIXTURES / "with-images", tmp / "with-images")  # written by LeRobot 0.6.1
    policy_dir = train_tiny_diffusion(data, tmp / "lerobot_policy", steps=10, seed=SEED)
    (tmp / "lerobot_pixels.py").write_text(FACTORY.format(policy_dir=str(policy_dir)))
    here = os.getcwd()
    os.chdir(tmp)  # a user runs steerlab from the folder holding their factory module
    try:
        yield tmp, policy_dir
    finally:
        os.chdir(here)
        sys.modules.pop("lerobot_pixels", None)


def frames(n: int, seed: int = 0) -> dict:
    """n observations as the env gives them (uint8 HWC frames), the env built as steerlab builds it."""
    env = make_env(resolve_env("lerobot_pixels:make_env"))
    obs = [env.reset(seed=seed + i)[0] for i in range(n)]
    return {k: np.stack([o[k] for o in obs]) for k in obs[0]}


def test_image_policy_speaks_the_camera_protocol(setup):
    tmp, policy_dir = setup
    policy = load_lerobot_diffusion(policy_dir)
    spec = policy.observation_spec
    assert (spec.state_dim, spec.cameras, spec.image_size) == (4, ("corner2",), (12, 16))
    assert policy.history == "repeat" and policy.obs_dim == 4 and policy.noise_shape == (16, 4)
    check_steerable(policy, "embedding")
    obs = frames(3)
    noise = torch.randn(3, 16, 4, generator=torch.Generator().manual_seed(1))
    chunk = policy.predict_chunk(obs, noise=noise)
    assert chunk.shape == (3, 15, 4) and np.isfinite(chunk).all()
    # float CHW in [0, 1] (already converted) gives the same chunk as the env's uint8 HWC frames
    converted = to_policy_obs(obs, spec)
    assert converted[CAM].shape == (3, 3, 12, 16) and converted[CAM].dtype == torch.float32
    np.testing.assert_array_equal(policy.predict_chunk(converted, noise=noise), chunk)
    # LeRobot's own prediction from the same frames (the current frame fills both observation steps)
    lerobot = policy.policy
    batch = {STATE: converted[STATE][:, None].repeat(1, 2, 1), CAM: converted[CAM][:, None].repeat(1, 2, 1, 1, 1)}
    with torch.no_grad():
        own = policy.postprocessor(lerobot.predict_action_chunk(policy.preprocessor(batch), noise=noise))
    np.testing.assert_allclose(chunk[:, : lerobot.config.n_action_steps], own.numpy(), atol=1e-5)
    # the RL actor's features: frozen conditioning (image features + state) and the normalized state
    feats = policy.rl_features(converted)
    assert feats.shape == (3, policy.rl_feature_dim) == (3, policy.embed_dim + 4)
    torch.testing.assert_close(feats[:, : policy.embed_dim], policy.embed(converted))
    # the embedding steers: a gradient reaches it through the denoiser
    e = policy.embed(converted).detach().requires_grad_(True)
    policy.chunk_from_embedding(e, noise).sum().backward()
    assert e.grad is not None and e.grad.abs().sum() > 0
    policy.train()  # only the wrapper's mode: LeRobot's stays eval (no random crop)
    assert not policy.policy.training
    np.testing.assert_array_equal(policy.predict_chunk(obs, noise=noise), chunk)


@pytest.mark.parametrize("bad, match", [
    ({STATE: np.zeros(4, np.float32), CAM: np.zeros((10, 10, 3), np.uint8)}, "corner2.*12, 16, 3"),
    ({STATE: np.zeros(4, np.float32)}, "lacks camera 'observation.images.corner2'"),
    (np.zeros(4, np.float32), "sees cameras"),
])
def test_bad_camera_observations_are_one_line(setup, bad, match):
    policy = load_lerobot_diffusion(setup[1])
    with pytest.raises(UserError, match=match) as err:
        policy.predict_chunk(bad)
    assert "\n" not in str(err.value)


def test_stacked_history_is_refused_for_cameras(setup):
    with pytest.raises(UserError, match="history='repeat'") as err:
        load_lerobot_diffusion(setup[1], history="stacked")
    assert "\n" not in str(err.value)


def test_image_policy_steered_saved_loaded_identically_weights_unchanged(setup):
    tmp, _ = setup
    policy, meta, tensors = load_policy_source("lerobot_pixels:make_policy")
    before = {k: v.detach().clone() for k, v in policy.state_dict().items()}

    # zprl's latent interface: a VIB fitted post hoc on the global conditioning of frames from the task
    wrapped = fit_plugin_vib(policy, frames(32, seed=100), PluginVIBConfig(latent_dim=4, vib_hidden=32, vib_depth=1,
                                                                           steps=10, batch_size=16, seed=SEED),
                             base_meta=meta, base_tensors=tensors, progress=False)
    save_plugin_vib_policy(wrapped, tmp / "vib")

    obs = frames(2, seed=500)
    noise = torch.randn(2, 16, 4, generator=torch.Generator().manual_seed(2))
    for method, base in (("dsrl", "lerobot_pixels:make_policy"), ("zprl", str(tmp / "vib")),
                         ("action-residual", "lerobot_pixels:make_policy")):
        cfg = FinetuneConfig(base=base, method=method, env="lerobot_pixels:make_env", env_steps=32, max_steps=16,
                             seed=SEED, out=str(tmp / f"run-{method}"), warmup_decisions=2, eval_every=10**6,
                             eval_episodes=1, final_episodes=0, buffer_size=200, tensorboard=False,
                             sac=SACConfig(hidden=32, batch_size=4))
        tuner = Finetuner(cfg, progress=False)
        out = tuner.run()
        assert tuner.env_steps >= 32, method
        # the replay holds frozen features, never frames (12*16*3 = 576 pixels per observation)
        assert tuner.replay.obs.dtype == np.float32 and tuner.replay.obs.shape[1] < 12 * 16 * 3, method
        steered = load_policy(out / "policy")  # the one loader rebuilds it (factory + copied weights)
        assert steered.observation_spec.cameras == ("corner2",)
        chunk = steered.predict_chunk(obs, noise=noise)
        assert chunk.shape == (2, 15, 4) and np.isfinite(chunk).all(), method
        np.testing.assert_array_equal(chunk, tuner.steered_policy().predict_chunk(obs, noise=noise))

    # the LeRobot policy was only read: the same weights in memory and in the steered checkpoints
    for k, v in policy.state_dict().items():
        assert torch.equal(v, before[k]), k
    reloaded = load_policy(tmp / "run-zprl" / "policy").base
    inner = getattr(reloaded, "policy", reloaded)
    for k, v in inner.state_dict().items():
        assert torch.equal(v, before[k]), k
