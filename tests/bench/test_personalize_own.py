"""steerlab bench personalize_own: its Pendulum user and its paired rows (the benchmark itself runs for minutes)."""

import numpy as np
import pytest

from steerlab.bench.personalize_own import USER_TARGET, rollouts, summarize, user_expert
from steerlab.cli.bench import benchmarks
from steerlab.envs.classic_experts import pendulum_swingup


class Scripted:
    """A scripted controller behind the policy interface the rollouts use."""
    chunk_shape, n_action_steps = (1, 1), 1

    def __init__(self, fn):
        self.fn = fn

    def predict_chunk(self, obs, noise=None):
        return np.stack([self.fn(o) for o in obs])[:, None]


def test_the_user_swings_up_and_holds_its_own_angle_the_expert_upright():
    user, expert = (rollouts(Scripted(f), [7, 8]) for f in (user_expert, pendulum_swingup))
    assert all(e["upright"] for e in user + expert)
    assert [e["angle"] for e in user] == pytest.approx([USER_TARGET] * 2, abs=0.02)
    assert [e["angle"] for e in expert] == pytest.approx([0.0, 0.0], abs=0.02)


def test_rows_are_paired_with_the_base_on_the_same_episodes():
    base = [{"return": -100.0, "upright": True, "angle": 0.0}, {"return": -120.0, "upright": True, "angle": 0.0}]
    other = [{"return": -90.0, "upright": True, "angle": 0.1}, {"return": -300.0, "upright": False, "angle": 2.0}]
    row = summarize(other, base)
    assert row["minus_base"]["mean"] == pytest.approx((10.0 - 180.0) / 2)
    assert row["lost_swingup"] == 1 and row["upright"] == 0.5
    assert summarize(base, base)["minus_base"]["mean"] == 0.0
    assert "personalize_own" in benchmarks()
