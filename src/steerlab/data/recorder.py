"""`Recorder`: write your own demonstrations (teleoperation, your own control loop) as a LeRobotDataset v3.

    from steerlab.data import Recorder

    with Recorder("runs/datasets/my_demos", task="Pendulum-v1", fps=20) as rec:
        for episode in range(10):
            obs, _ = env.reset(seed=episode)
            for t in range(200):
                action = my_joystick()                    # or your controller, your policy...
                next_obs, reward, terminated, truncated, info = env.step(action)
                rec.add_frame(obs, action, reward=reward, success=info.get("is_success"))
                obs = next_obs
                if terminated or truncated:
                    break
            rec.end_episode()

Frames are kept in memory and written once, through the same writer as `steerlab collect`
(steerlab.data.dataset.write_dataset): the folder appears complete or not at all. Leaving the `with`
block writes the finished episodes (an unfinished one is ended first; after an exception, e.g. Ctrl-C
during teleoperation, it is dropped and the finished ones are still written). An existing folder is
refused when the Recorder is created, before anything is recorded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from steerlab.core.errors import UserError
from steerlab.data.dataset import Episode, write_dataset


class Recorder:
    """Collects frames episode by episode; `close()` (or leaving `with`) writes the dataset.

    `task`: the task string stored with every frame (an env id such as 'Pendulum-v1' lets
    `steerlab personalize` and `evaluate` name the environment); `fps`: the control rate (LeRobot's
    timestamps); `obs_dim` / `action_dim`: checked on every frame when given, else taken from the first;
    `extra_info`: anything JSON you want kept in meta/steerlab.json (operator, robot, ...)."""

    def __init__(self, out: str | Path, task: str = "demonstration", fps: int = 30, obs_dim: int | None = None,
                 action_dim: int | None = None, robot_type: str | None = None, extra_info: dict | None = None):
        self.out = Path(out)
        if self.out.exists():
            raise UserError(f"{self.out} already exists: choose another folder for the recording (nothing there "
                            f"is replaced)")
        if int(fps) <= 0:
            raise UserError(f"fps must be a positive number of frames per second, got {fps}")
        self.task, self.fps, self.robot_type = str(task), int(fps), robot_type
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.extra_info = dict(extra_info or {})
        self.episodes: list[Episode] = []
        self._frames: list[tuple[np.ndarray, np.ndarray, float | None, bool]] = []
        self._with_reward: bool | None = None
        self.path: Path | None = None

    def _vector(self, x, what: str, dim: int | None) -> tuple[np.ndarray, int]:
        v = np.asarray(x, np.float32).reshape(-1)
        if dim is not None and v.shape[0] != dim:
            raise UserError(f"{what} has {v.shape[0]} values, the recording {dim} (every frame must match the first)")
        if not np.isfinite(v).all():
            raise UserError(f"{what} contains NaN or infinity (frame {len(self._frames)} of episode "
                            f"{len(self.episodes)})")
        return v, v.shape[0]

    def add_frame(self, obs, action, reward: float | None = None, success: bool | None = None) -> None:
        """One step: the observation the action was chosen from, the action executed, the reward after it."""
        if self.path is not None:
            raise UserError("this Recorder is closed: start a new one for more frames")
        obs, self.obs_dim = self._vector(obs, "obs", self.obs_dim)
        action, self.action_dim = self._vector(action, "action", self.action_dim)
        if self._with_reward is None:
            self._with_reward = reward is not None
        if (reward is not None) != self._with_reward:
            raise UserError("give reward= on every frame or on none (the dataset has a reward column or not)")
        self._frames.append((obs, action, None if reward is None else float(reward), bool(success)))

    def end_episode(self, success: bool | None = None, **meta) -> None:
        """Close the current episode. `success` default: whether any frame reported success; `meta` is kept
        per episode (JSON values)."""
        if not self._frames:
            raise UserError("end_episode() with no frames: call add_frame(obs, action, ...) first")
        obs, act, rew, succ = zip(*self._frames, strict=True)
        rewards = np.asarray(rew, np.float32) if self._with_reward else None
        self.episodes.append(Episode(np.stack(obs), np.stack(act), rewards,
                                     any(succ) if success is None else bool(success), meta=dict(meta)))
        self._frames = []

    def close(self) -> Path:
        """Write the dataset (ends an unfinished episode first); returns its folder."""
        if self.path is not None:
            return self.path
        if self._frames:
            self.end_episode()
        if not self.episodes:
            raise UserError(f"nothing was recorded: {self.out} is not written (add frames, then end_episode())")
        self.path = write_dataset(self.out, self.episodes, self.task, fps=self.fps, robot_type=self.robot_type,
                                  extra_info={**self.extra_info, "recorded_with": "steerlab.data.Recorder",
                                              "fps": self.fps})
        return self.path

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._frames = []  # the episode the exception interrupted is incomplete: drop it
            if self.episodes:
                self.close()
            return
        self.close()
