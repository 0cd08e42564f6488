"""The env-family registry: any Gymnasium id, module:factory, or Meta-World task, one contract."""

import gymnasium as gym
import numpy as np
import pytest

from steerlab.core.errors import UserError
from steerlab.envs.registry import EnvSpec, checkpoint_env, make_env, resolve_env
from steerlab.envs.toy import ENV_ID


class GoalDictEnv(gym.Env):
    """Dict observations, success under a custom key, succeeds at step 2 only (then fails again)."""

    observation_space = gym.spaces.Dict({"observation": gym.spaces.Box(-1, 1, (2,)),
                                         "desired_goal": gym.spaces.Box(-1, 1, (1,))})
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return {"observation": np.zeros(2), "desired_goal": np.ones(1)}, {}

    def step(self, action):
        self.t += 1
        self.last_action = np.asarray(action)
        obs = {"observation": np.full(2, self.t, np.float64), "desired_goal": np.ones(1)}
        return obs, 1.5, False, False, {"reached": self.t == 2}


def make_goal_env(**kwargs):
    return GoalDictEnv()


def test_families_resolve_and_record_their_defaults():
    assert resolve_env("reach-v3") == EnvSpec("metaworld", "reach-v3", 200, position_key="hand_pos")
    pend = resolve_env("Pendulum-v1")
    assert (pend.family, pend.max_steps, pend.position_key) == ("gym", 200, None)
    toy = resolve_env(ENV_ID, max_steps=7, shift="actuation:gain-0.5")
    assert (toy.family, toy.max_steps, toy.position_key, toy.shift) == ("gym", 7, "ee_pos",
                                                                              "actuation:gain-0.50")  # canonical
    fac = resolve_env(f"{__name__}:make_goal_env", success_key="reached", kwargs={"a": 1})
    assert (fac.family, fac.success_key, fac.kwargs) == ("factory", "reached", {"a": 1})
    assert resolve_env(fac.to_dict()) == fac  # plain JSON round trip
    # v1 checkpoints recorded {'suite', 'task', 'max_steps'}
    assert EnvSpec.from_dict({"suite": "metaworld", "task": "reach-v3", "max_steps": 30}).max_steps == 30
    assert checkpoint_env({"config": {"base": {"config": {"env": {"task": "x"}}}}}) == {"task": "x"}


def test_unknown_env_is_one_line_with_suggestions():
    with pytest.raises(UserError, match="unknown environment 'Pendulum-v9'.*did you mean Pendulum-v1"):
        resolve_env("Pendulum-v9")
    # a module:factory that does not import: said so, with the fix (not "unknown environment")
    with pytest.raises(UserError, match="cannot import 'no_such_module' for env factory 'no_such_module:make': run "
                                        "from the folder holding no_such_module.py"):
        resolve_env("no_such_module:make")


def test_success_at_any_step_horizon_clipping_and_flattening():
    spec = resolve_env(f"{__name__}:make_goal_env", success_key="reached", max_steps=4)
    env = make_env(spec, reward="sparse")
    obs, info = env.reset(seed=0)
    assert obs.shape == (3,) and obs.dtype == np.float32 and info["is_success"] is False
    steps = [env.step(np.array([5.0], np.float32)) for _ in range(4)]
    assert [s[4]["success"] for s in steps] == [False, True, False, False]
    assert [s[4]["is_success"] for s in steps] == [False, True, True, True]  # success at any step so far
    assert [s[1] for s in steps] == [0.0, 1.0, 0.0, 0.0]  # sparse: 1 on success
    assert [s[3] for s in steps] == [False, False, False, True]  # truncated at max_steps
    assert env.unwrapped.last_action[0] == 2.0  # clipped to the action space
    with pytest.raises(UserError, match=r"action must have shape \(1,\)"):
        env.step(np.zeros(2, np.float32))
    # terminate_on_success ends the episode at the first success
    env = make_env(spec, terminate_on_success=True)
    env.reset(seed=0)
    assert env.step(np.zeros(1, np.float32))[2:4] == (False, False)
    _, r, term, trunc, _ = env.step(np.zeros(1, np.float32))
    assert (r, term, trunc) == (1.5, True, False)  # dense: the env's own reward


def test_position_key_must_exist_when_named():
    spec = resolve_env(f"{__name__}:make_goal_env", position_key="ee")
    with pytest.raises(UserError, match="info has no position key 'ee'"):
        make_env(spec).reset(seed=0)


def test_toy_env_is_seeded():
    a, b = make_env(ENV_ID), make_env(ENV_ID)
    np.testing.assert_array_equal(a.reset(seed=4)[0], b.reset(seed=4)[0])
    assert not np.allclose(a.reset(seed=5)[0], b.reset(seed=4)[0])


class CameraDictEnv(gym.Env):
    """LeRobot's names: a state (float64 here) and one camera frame; `bad` makes the frame float."""

    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(self, bad=False, extra=False):
        dtype = np.float32 if bad else np.uint8
        spaces = {"observation.state": gym.spaces.Box(-1, 1, (3,), np.float64),
                  "observation.images.top": gym.spaces.Box(0, 255, (6, 8, 3), dtype)}
        if extra:
            spaces["desired_goal"] = gym.spaces.Box(-1, 1, (1,))
        self.observation_space = gym.spaces.Dict(spaces)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def make_camera_env(**kwargs):
    return CameraDictEnv(**kwargs)


def test_factory_camera_dicts_stay_dicts_and_bad_ones_are_one_line():
    env = make_env(resolve_env(f"{__name__}:make_camera_env", max_steps=2))
    assert set(env.observation_space.spaces) == {"observation.state", "observation.images.top"}
    for obs in (env.reset(seed=0)[0], env.step(np.zeros(2, np.float32))[0]):
        assert obs["observation.state"].dtype == np.float32 and obs["observation.state"].shape == (3,)
        assert obs["observation.images.top"].dtype == np.uint8 and obs["observation.images.top"].shape == (6, 8, 3)
    for kwargs, match in (({"bad": True}, "'observation.images.top' must be a uint8 Box"),
                          ({"extra": True}, "got 'desired_goal' too")):
        with pytest.raises(UserError, match=match) as err:
            make_env(resolve_env(f"{__name__}:make_camera_env", kwargs=kwargs))
        assert "\n" not in str(err.value)
