"""Meta-World camera observations: dict observations, the fast render path, errors."""

import numpy as np
import pytest

from steerlab.core.errors import UserError
from steerlab.envs.cameras import FAST_OFF_FLAGS, parse_cameras
from steerlab.envs.registry import make_env, resolve_env


def camera_env(cameras=("corner2", "topview"), size=(24, 32), **kw):
    spec = resolve_env("push-wall-v3", max_steps=5, kwargs={"cameras": list(cameras), "image_size": list(size), **kw})
    return make_env(spec, seed=0)


def test_observations_are_state_plus_uint8_hwc_frames_deterministic_per_seed():
    import mujoco

    env, twin = camera_env(), camera_env()
    try:
        obs, _ = env.reset(seed=7)
        assert set(obs) == {"observation.state", "observation.images.corner2", "observation.images.topview"}
        assert obs["observation.state"].shape == (39,)
        for cam in ("corner2", "topview"):
            img = obs[f"observation.images.{cam}"]
            assert img.dtype == np.uint8 and img.shape == (24, 32, 3) and img.std() > 5  # a scene, not a blank
        assert env.observation_space.contains(obs)
        np.testing.assert_array_equal(twin.reset(seed=7)[0]["observation.images.corner2"],
                                      obs["observation.images.corner2"])
        moved, *_ = env.step(np.ones(4, np.float32))
        assert moved["observation.images.topview"].shape == (24, 32, 3)
        # the fast path: no multisampling, no shadows/reflections/skybox/fog/haze
        r = env.camera_renderer
        assert env.unwrapped.model.vis.quality.offsamples == 0
        assert all(r.renderer.scene.flags[getattr(mujoco.mjtRndFlag, f)] == 0 for f in FAST_OFF_FLAGS)
    finally:
        env.close()
        twin.close()


def test_a_camera_policy_acts_on_env_observations():
    from steerlab.policies.flow_matching import FlowMatchingPolicy, FlowPolicyConfig

    env = camera_env(cameras=("corner2",), size=(24, 24))
    try:
        policy = FlowMatchingPolicy(FlowPolicyConfig(obs_dim=39, action_dim=4, hidden=32, embed_dim=16,
                                                     cameras=["corner2"], image_size=[24, 24])).eval()
        obs, _ = env.reset(seed=0)
        action = policy.select_action(obs)
        assert action.shape == (4,)
        env.step(action)
    finally:
        env.close()


def test_camera_errors():
    with pytest.raises(UserError, match="unknown camera 'nope'.*corner2"):
        camera_env(cameras=("nope",))
    with pytest.raises(UserError, match="camera names are letters"):
        parse_cameras("corner2,a.b")
    with pytest.raises(UserError, match="distinct"):
        parse_cameras(["a", "a"])
    assert parse_cameras("corner2, topview") == ("corner2", "topview")
