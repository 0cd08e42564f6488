"""Meta-World v3 task factory: seeded, fixed horizon, success-at-any-step, dense or sparse reward.

Initial states. An MT1 environment built the usual way cycles through 50 fixed object/goal setups.
We instead draw a fresh object/goal configuration from the env's own seeded generator at every
reset (`_freeze_rand_vec=False`, `seeded_rand_vec=True`). `reset(seed=s)` reseeds that generator, so an
episode is a pure function of its seed. Demonstrations, RL training and evaluation use disjoint seed
ranges (see `steerlab.envs.seeds.episode_seeds`) so a policy is never evaluated on the exact setups it was trained on.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from steerlab.envs.seeds import SEED_OFFSETS, episode_seeds  # noqa: F401  (re-exported: older imports)

# Eight tasks of the benchmark; push-v3 / reach-v3 serve as sanity checks of the imitation stack.
BENCHMARK_TASKS = [
    "push-wall-v3", "box-close-v3", "assembly-v3", "peg-insert-side-v3",
    "pick-place-v3", "hammer-v3", "disassemble-v3", "shelf-place-v3",
]
SANITY_TASKS = ["push-v3", "reach-v3"]
DEFAULT_MAX_STEPS = 200
PREFERENCE_TOLERANCE = 0.05  # Meta-World's own reach tolerance
OBS_DIM, ACT_DIM = 39, 4


def available_tasks() -> list[str]:
    import metaworld

    return sorted(metaworld.ALL_V3_ENVIRONMENTS)


def check_task(task: str) -> str:
    tasks = available_tasks()
    if task not in tasks:
        raise ValueError(f"unknown Meta-World task {task!r}; valid tasks: {', '.join(tasks)}")
    return task


class MetaWorldTask(gym.Wrapper):
    """Fixed-horizon wrapper around one Meta-World v3 environment.

    * `terminated` is True only on success when `terminate_on_success` is set; reaching the horizon is
      `truncated` (so RL bootstraps through it).
    * `info["success"]` is success at this step, `info["is_success"]` success at any step so far.
    * `info["hand_pos"]` is the end-effector position (for smoothness metrics).
    * reward: 'dense' is Meta-World's shaped reward / 10 (in [0, 1]); 'sparse' is 1 on success else 0. With a
      `goal_offset` (a user's personal target), 'dense' is reach-v3's shaped reward toward goal + offset.
    """

    def __init__(self, env: gym.Env, task: str, max_steps: int, terminate_on_success: bool, reward: str,
                 goal_offset: np.ndarray | None = None):
        super().__init__(env)
        # personal-preference variant: success means the hand reaches goal + offset (the policy still
        # observes the task's own goal; only a personalized policy knows the offset)
        self.goal_offset = None if goal_offset is None else np.asarray(goal_offset, np.float32)
        if reward not in ("dense", "sparse"):
            raise ValueError(f"reward must be 'dense' or 'sparse', got {reward!r}")
        self.task = task
        self.max_steps = int(max_steps)
        self.terminate_on_success = terminate_on_success
        self.reward_type = reward
        self._t = 0
        self._ever_success = False
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self.env.unwrapped.seed(int(seed))
        obs, info = self.env.reset()
        self._t = 0
        self._ever_success = False
        info = dict(info, success=False, is_success=False, hand_pos=np.asarray(obs[:3], np.float32))
        return obs.astype(np.float32), info

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        if action.shape != (ACT_DIM,):
            raise ValueError(f"{self.task}: action must have shape ({ACT_DIM},), got {action.shape}")
        obs, reward, _, _, info = self.env.step(action)
        self._t += 1
        if self.goal_offset is None:
            success = bool(info.get("success", 0.0) > 0.5)
        else:
            success = bool(np.linalg.norm(obs[:3] - (obs[-3:] + self.goal_offset)) <= PREFERENCE_TOLERANCE)
        self._ever_success |= success
        if self.goal_offset is not None and self.reward_type == "dense":
            reward = self._personal_reward(obs)
        r = float(success) if self.reward_type == "sparse" else float(reward) / 10.0
        terminated = success and self.terminate_on_success
        truncated = self._t >= self.max_steps and not terminated
        info = dict(info, success=success, is_success=self._ever_success,
                    hand_pos=np.asarray(obs[:3], np.float32))
        return obs.astype(np.float32), r, terminated, truncated, info


    def _personal_reward(self, obs) -> float:
        """Meta-World reach-v3's shaped reward (×10) toward the user's target (goal + offset) instead of the task's:
        the dense reward agrees with the personal success (a user improving the policy online optimises it)."""
        from metaworld.utils import reward_utils

        raw = self.env.unwrapped
        target = np.asarray(obs[-3:], np.float64) + self.goal_offset
        dist = float(np.linalg.norm(raw.tcp_center - target))
        margin = float(np.linalg.norm(raw.hand_init_pos - target))
        return 10.0 * float(reward_utils.tolerance(dist, bounds=(0, PREFERENCE_TOLERANCE), margin=margin,
                                                   sigmoid="long_tail"))


def make_env(task: str, seed: int = 0, max_steps: int = DEFAULT_MAX_STEPS, terminate_on_success: bool = False,
             reward: str = "dense", render_mode: str | None = None, camera_name: str = "corner2",
             goal_offset=None, shift: str | None = None, cameras=(), image_size=(84, 84),
             fast_render: bool = True) -> gym.Env:
    """Build one seeded Meta-World v3 task with freshly randomized object/goal positions per reset.

    `shift`: a deployment shift name (steerlab.envs.shifts), e.g. 'actuation:offset-x+0.10'.
    `cameras`: camera names ('corner2', 'topview', ...): observations become dicts with
    `observation.images.<camera>` uint8 (H, W, 3) at `image_size`, rendered on the fast path unless
    `fast_render=False` (envs/cameras.py)."""
    check_task(task)
    from steerlab.envs.cameras import CameraObservation, ensure_gl_backend, parse_cameras

    cameras = parse_cameras(cameras)
    if render_mode is not None or cameras:
        ensure_gl_backend()
    import metaworld

    cls = metaworld.ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{task}-goal-observable"]
    env = cls(seed=seed, render_mode=render_mode)
    raw = env.unwrapped
    raw._freeze_rand_vec = False
    raw.seeded_rand_vec = True
    raw.max_path_length = max_steps + 1  # our wrapper owns the horizon; never hit Meta-World's assert
    if render_mode is not None:
        import mujoco

        cam = mujoco.mj_name2id(raw.model, mujoco.mjtObj.mjOBJ_CAMERA, camera_name)
        if cam < 0:
            cams = [raw.model.camera(i).name for i in range(raw.model.ncam)]
            raise ValueError(f"unknown camera {camera_name!r}; cameras: {', '.join(cams)}")
        raw.mujoco_renderer.camera_id = cam
    raw.seed(seed)
    from steerlab.envs.shifts import apply_shift

    env = apply_shift(MetaWorldTask(env, task, max_steps, terminate_on_success, reward, goal_offset), shift)
    # Meta-World's corner cameras are mounted upside down: turned upright as LeRobot's Meta-World env does
    upright = [c for c in cameras if c.startswith("corner")]
    return CameraObservation(env, cameras, tuple(image_size), fast_render, upright) if cameras else env


def expert_policy(task: str, goal_offset=None):
    """Meta-World's scripted expert for `task` (callable obs -> action). With `goal_offset`, the expert
    is shown goal + offset instead of the goal: it demonstrates that personal preference."""
    check_task(task)
    from metaworld.policies import ENV_POLICY_MAP

    policy = ENV_POLICY_MAP[task]()
    if goal_offset is None:
        return policy.get_action
    offset = np.asarray(goal_offset, np.float64)

    def act(obs):
        shifted = np.array(obs, np.float64)
        shifted[-3:] += offset
        return policy.get_action(shifted)

    return act
