"""Scripted experts for the panda-gym tasks (written for steerlab; panda-gym ships none).

Both are stateless functions of the flat observation (layout in `steerlab.envs.panda_tasks`): the phase
is read off the current state, so the expert recovers by itself when held action noise knocks it off
course (it re-approaches a cube it lost, re-aligns behind a cube that drifted). Actions are
proportional moves of the end effector towards a waypoint, saturated at ±1 (= 5 cm per step).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from steerlab.core.errors import UserError

CUBE = 0.04      # cube edge (m)
GAIN = 10.0      # action per metre of waypoint error (saturates beyond 10 cm)


def _move(ee: np.ndarray, target: np.ndarray, gain: float = GAIN) -> np.ndarray:
    return np.clip(gain * (target - ee), -1.0, 1.0)


def push_expert(obs: np.ndarray) -> np.ndarray:
    """Push: travel above the cube's top to a point behind the cube on the line goal→cube (so the hand
    never sweeps the cube sideways), lower to the cube's centre height, push towards the goal while
    steering the contact point so the cube stays on the line; if the cube drifts off line, re-align first.
    Known failure (~7% of episodes): a cube near the far edge that must come towards the robot, whose
    pre-push point the arm cannot reach at table height."""
    obs = np.asarray(obs, np.float64)
    ee, obj, goal = obs[0:3], obs[6:9], obs[18:21]
    to_goal = goal[:2] - obj[:2]
    dist = np.linalg.norm(to_goal)
    if dist < 1e-6:
        return np.zeros(3, np.float32)
    u = to_goal / dist                                  # push direction in the table plane
    behind = obj[:2] - u * (CUBE / 2 + 0.03)            # where the hand starts a push
    rel = ee[:2] - obj[:2]
    along = rel @ u                                     # < 0: hand is behind the cube
    lateral = rel - along * u                           # hand's offset from the push line
    low = ee[2] < obj[2] + 0.015
    if along < -CUBE / 2 + 0.005 and np.linalg.norm(lateral) < 0.012 and low:
        # push: advance by the remaining distance (slows down near the goal so the cube does not
        # overshoot) while pulling the hand back onto the line through the cube and the goal
        target_xy = ee[:2] + u * min(dist, 0.06) - lateral
        target = np.array([*target_xy, obj[2]])
    elif np.linalg.norm(ee[:2] - behind) < 0.02:
        target = np.array([*behind, obj[2]])            # lower behind the cube
    else:
        # travel to the pre-push point above the cube's height, so the hand never knocks it sideways
        target = np.array([*behind, obj[2] + CUBE + (0.04 if np.linalg.norm(rel) < 0.06 else 0.01)])
    return _move(ee, target).astype(np.float32)


def pick_and_place_expert(obs: np.ndarray) -> np.ndarray:
    """Pick-and-place: move above the cube with the gripper open, descend, close, lift and carry it to
    the goal with the gripper closed. Holding = the cube is between the fingers and they are closed on it;
    if the cube is dropped the expert goes back for it."""
    obs = np.asarray(obs, np.float64)
    ee, width, obj, goal = obs[0:3], obs[6], obs[7:10], obs[19:22]
    open_, close = 1.0, -1.0
    d = np.linalg.norm(ee - obj)
    d_xy = np.linalg.norm(ee[:2] - obj[:2])
    holding = d < 0.02 and CUBE - 0.01 < width < CUBE + 0.01   # fingers closed on the cube
    if holding:
        return np.append(_move(ee, goal), close).astype(np.float32)
    if d_xy > 0.01:
        # above the cube first (never descend onto it from the side)
        target = np.array([*obj[:2], obj[2] + 0.06])
        return np.append(_move(ee, target), open_).astype(np.float32)
    if d > 0.01:
        return np.append(_move(ee, obj), open_).astype(np.float32)   # descend, gripper open
    return np.append(_move(ee, obj), close).astype(np.float32)       # at the cube: close


EXPERTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "PandaPush-v3": push_expert, "PandaPickAndPlace-v3": pick_and_place_expert,
}


def expert_policy(task: str, goal_offset=None) -> Callable[[np.ndarray], np.ndarray]:
    """The scripted expert for `task` (callable obs -> action)."""
    if task not in EXPERTS:
        raise UserError(f"no scripted expert for {task!r}; panda tasks with one: {', '.join(EXPERTS)}")
    if goal_offset is not None:
        raise UserError("personal goal offsets are only implemented for Meta-World experts")
    return EXPERTS[task]
