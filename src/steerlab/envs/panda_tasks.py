"""panda-gym `PandaPush-v3` and `PandaPickAndPlace-v3` as plain, seeded, fixed-horizon Gymnasium envs.

A second simulator family (PyBullet) beside Meta-World (MuJoCo), so that results are not one
simulator's artefact. `make_push(...)` / `make_pick_and_place(...)` are usable as `module:factory`
(`steerlab.envs.panda_tasks:make_push`) and registered as the `panda` family.

Observation (float32, flat): panda-gym's dict observation flattened as
`[observation, desired_goal, achieved_goal]`:

  PandaPush-v3 (24,)          PandaPickAndPlace-v3 (25,)
  0:3   end-effector position   0:3   end-effector position
  3:6   end-effector velocity   3:6   end-effector velocity
                                6     gripper opening (finger width, m)
  6:9   object position         7:10  object position
  9:12  object rotation (Euler) 10:13 object rotation (Euler)
  12:15 object velocity         13:16 object velocity
  15:18 object angular velocity 16:19 object angular velocity
  18:21 desired goal            19:22 desired goal
  21:24 achieved goal (= object position)  22:25 achieved goal

Action: end-effector displacement (dx, dy, dz) in [-1, 1] (× 5 cm per step); pick-and-place adds the
gripper command (4th entry, + opens, − closes). Push keeps panda-gym's blocked gripper.

Episodes. panda-gym re-seeds from OS entropy when reset without a seed and PyBullet carries solver
state from one episode to the next; here every reset first restores the simulator snapshot taken at
construction, then resets the task with a seed (the given one, else the next draw of the env's own
seeded generator), so an episode is a pure function of its seed whatever ran before it.
The horizon is `max_steps` (default 50, panda-gym's own limit); reaching it is a truncation.

Reward. 'dense': panda-gym's dense reward, −‖object − goal‖ in metres (the `...Dense-v3` variants);
'sparse': 1 on success, else 0 (steerlab's convention, as for Meta-World). Success is panda-gym's own:
object within 5 cm of the goal. `info["success"]` is success at this step, `info["is_success"]`
success at any step so far, `info["ee_pos"]` the end-effector position (for smoothness metrics).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from steerlab.core.errors import UserError

DEFAULT_MAX_STEPS = 50
POSITION_KEY = "ee_pos"
REWARDS = ("dense", "sparse")


def _env_classes() -> dict[str, type]:
    from panda_gym.envs.panda_tasks import PandaPickAndPlaceEnv, PandaPushEnv

    return {"PandaPush-v3": PandaPushEnv, "PandaPickAndPlace-v3": PandaPickAndPlaceEnv}


TASKS = ("PandaPush-v3", "PandaPickAndPlace-v3")


class PandaTask(gym.Env):
    """One panda-gym task with a flat observation, a fixed horizon and seed-pure episodes."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, task: str, seed: int = 0, max_steps: int = DEFAULT_MAX_STEPS,
                 terminate_on_success: bool = False, reward: str = "dense", render_mode: str | None = None):
        if task not in TASKS:
            raise UserError(f"unknown panda-gym task {task!r}; valid tasks: {', '.join(TASKS)}")
        if reward not in REWARDS:
            raise UserError(f"reward must be 'dense' or 'sparse', got {reward!r}")
        if int(max_steps) <= 0:
            raise UserError(f"max_steps must be positive, got {max_steps}")
        self.task, self.max_steps = task, int(max_steps)
        self.terminate_on_success, self.reward_type = bool(terminate_on_success), reward
        self.render_mode = render_mode
        self.raw = _env_classes()[task](reward_type="dense", render_mode=render_mode or "rgb_array")
        # the snapshot every episode starts from; PyBullet restores it exactly only with deterministic
        # sorting of overlapping pairs (else contacts are solved in history-dependent order)
        self.raw.sim.physics_client.setPhysicsEngineParameter(deterministicOverlappingPairs=1)
        self._initial_state = self.raw.sim.save_state()
        self._seeds = np.random.default_rng(seed)
        act_dim = self.raw.action_space.shape[0]
        obs = self._flat(self.raw._get_obs())
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, obs.shape, np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)
        self._t, self._ever_success = 0, False

    @staticmethod
    def _flat(obs: dict) -> np.ndarray:
        return np.concatenate([obs["observation"], obs["desired_goal"], obs["achieved_goal"]]).astype(np.float32)

    def _info(self, success: bool, distance: float) -> dict:
        return {"success": success, "is_success": self._ever_success, "distance": distance,
                POSITION_KEY: np.asarray(self.raw.robot.get_ee_position(), np.float32)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is None:
            seed = int(self._seeds.integers(2**31 - 1))
        sim = self.raw.sim
        sim.restore_state(self._initial_state)
        # restoreState leaves PyBullet's contact cache alone: lift the cube out of the scene and run collision
        # detection once, so every pair it was in is dropped; the new episode then starts from fresh contacts
        sim.set_base_pose("object", np.array([0.0, 0.0, 10.0]), np.array([0.0, 0.0, 0.0, 1.0]))
        sim.physics_client.performCollisionDetection()
        obs, _ = self.raw.reset(seed=int(seed))
        self._t, self._ever_success = 0, False
        d = float(np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"]))
        return self._flat(obs), self._info(False, d)

    def step(self, action):
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self.action_space.shape:
            raise UserError(f"{self.task}: action must have shape {self.action_space.shape}, got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise UserError(f"{self.task}: action is not finite: {action}")
        obs, _, _, _, info = self.raw.step(np.clip(action, -1.0, 1.0))
        self._t += 1
        success = bool(info["is_success"])
        self._ever_success |= success
        d = float(np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"]))
        reward = float(success) if self.reward_type == "sparse" else -d
        terminated = success and self.terminate_on_success
        truncated = self._t >= self.max_steps and not terminated
        return self._flat(obs), reward, terminated, truncated, self._info(success, d)

    def render(self):
        return self.raw.render()

    def close(self) -> None:
        self.raw.close()


def _make(task: str, seed: int, max_steps: int, terminate_on_success: bool, reward: str, kw: dict) -> PandaTask:
    render_mode = kw.pop("render_mode", None)
    unknown = sorted(k for k, v in kw.items() if v is not None)
    if unknown:
        raise UserError(f"{task}: unsupported options {', '.join(unknown)}")
    return PandaTask(task, seed, max_steps, terminate_on_success, reward, render_mode)


def make_push(seed: int = 0, max_steps: int = DEFAULT_MAX_STEPS, terminate_on_success: bool = False,
              reward: str = "dense", **kw) -> PandaTask:
    """PandaPush-v3: push the cube to the goal on the table (observation (24,), action (3,))."""
    return _make("PandaPush-v3", seed, max_steps, terminate_on_success, reward, kw)


def make_pick_and_place(seed: int = 0, max_steps: int = DEFAULT_MAX_STEPS, terminate_on_success: bool = False,
                        reward: str = "dense", **kw) -> PandaTask:
    """PandaPickAndPlace-v3: grasp the cube and carry it to a goal that may be in the air (obs (25,), action (4,))."""
    return _make("PandaPickAndPlace-v3", seed, max_steps, terminate_on_success, reward, kw)


FACTORIES = {"PandaPush-v3": make_push, "PandaPickAndPlace-v3": make_pick_and_place}


def make_env(task: str, seed: int = 0, max_steps: int = DEFAULT_MAX_STEPS, terminate_on_success: bool = False,
             reward: str = "dense", **kw) -> PandaTask:
    """The factory for `task` (one of TASKS), called with the same arguments as Meta-World's `make_env`."""
    if task not in FACTORIES:
        raise UserError(f"unknown panda-gym task {task!r}; valid tasks: {', '.join(TASKS)}")
    return FACTORIES[task](seed=seed, max_steps=max_steps, terminate_on_success=terminate_on_success,
                           reward=reward, **kw)


class PandaFamily:
    """The `panda` environment family for `steerlab.envs.registry` (same interface as its `EnvFamily`;
    not a subclass so that this module never imports the registry, which imports it). `PandaTask`
    already implements the registry's contract (horizon, success at any step, termination on success,
    dense/sparse reward, flat observation, action check), so `build` returns it unwrapped."""

    name = "panda"
    default_position_key = POSITION_KEY

    def owns(self, env_id: str) -> bool:
        return env_id in FACTORIES

    def default_max_steps(self, env_id: str) -> int:
        return DEFAULT_MAX_STEPS

    def position_key(self, env_id: str) -> str | None:
        return POSITION_KEY

    def build(self, spec, seed: int, terminate_on_success: bool, reward: str, render_mode: str | None) -> PandaTask:
        if spec.success_key != "is_success":
            raise UserError("panda-gym reports success as 'is_success'; success_key cannot be changed")
        return FACTORIES[spec.id](seed=seed, max_steps=spec.max_steps, terminate_on_success=terminate_on_success,
                                  reward=reward, render_mode=render_mode, **spec.kwargs)
