"""Deployment shifts: names, the actuation wrapper, the coverage region, and where they are recorded."""

import gymnasium as gym
import numpy as np
import pytest

from steerlab.core.errors import UserError
from steerlab.envs.shifts import apply_shift, parse_shift, shift_name, uniform_mean_quantile


class Recorder(gym.Env):
    """4-d action env that records what it was asked to execute, with settable initial positions."""

    action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)

    def __init__(self, low=(0.0, 0.0, 0.0), high=(1.0, 2.0, 0.001)):
        self.low, self.high = np.asarray(low), np.asarray(high)
        self.values = self.low.copy()
        self.received = None

    def initial_positions(self):
        return self.values, self.low, self.high

    def reset(self, *, seed=None, options=None):
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.received = np.asarray(action)
        return np.zeros(3, np.float32), 0.0, False, False, {}


def test_names_are_canonical_and_round_trip():
    assert shift_name("actuation:offset-x+0.1") == "actuation:offset-x+0.10"
    assert shift_name("actuation:offset-z-0.15") == "actuation:offset-z-0.15"
    assert shift_name("actuation:gain-0.5") == "actuation:gain-0.50"
    assert shift_name("coverage:low-0.5") == "coverage:low-0.50"
    for name in ("actuation:offset-x+0.10", "actuation:gain-y-0.50", "coverage:high-0.70"):
        assert shift_name(shift_name(name)) == shift_name(name)
    assert parse_shift(None) is None and parse_shift("none") is None
    assert parse_shift("coverage:low-0.70").magnitude == pytest.approx(0.7)
    assert parse_shift("actuation:gain-0.5").magnitude == pytest.approx(0.5)


@pytest.mark.parametrize("bad", ["wind:strong", "actuation", "actuation:offset-q+0.1", "actuation:gain-0",
                                 "coverage:low-1.5", "coverage:middle-0.5", "offset-x+0.1"])
def test_unknown_names_are_one_line_user_errors(bad):
    with pytest.raises(UserError) as err:
        parse_shift(bad)
    msg = str(err.value)
    assert "\n" not in msg and ("valid forms" in msg or "must" in msg), msg


def test_actuation_offset_and_gain_change_what_the_robot_executes():
    env = apply_shift(Recorder(), "actuation:offset-x+0.10")
    env.step(np.array([0.2, 0.3, -0.4, 1.0], np.float32))
    np.testing.assert_allclose(env.unwrapped.received, [0.3, 0.3, -0.4, 1.0], atol=1e-6)
    env = apply_shift(Recorder(), "actuation:gain-0.5")  # position axes scaled, the gripper spared
    env.step(np.array([0.2, 0.3, -0.4, 1.0], np.float32))
    np.testing.assert_allclose(env.unwrapped.received, [0.1, 0.15, -0.2, 1.0], atol=1e-6)
    assert apply_shift(Recorder(), "coverage:low-0.50").__class__ is Recorder  # deployment: full range, no wrapper
    with pytest.raises(UserError, match="axis"):
        apply_shift(Recorder(), "actuation:offset-7+0.10")


def test_coverage_region_keeps_the_stated_share_on_the_stated_side():
    rng = np.random.default_rng(0)
    env = Recorder()
    low_s, high_s = parse_shift("coverage:low-0.70"), parse_shift("coverage:high-0.70")
    kept_low, kept_high = [], []
    for _ in range(4000):
        env.values = env.low + rng.random(3) * (env.high - env.low)
        kept_low.append(low_s.accepts(env))
        kept_high.append(high_s.accepts(env))
        if kept_low[-1]:  # low side: normalized randomized coordinates have a small mean
            assert np.mean((env.values[:2] - env.low[:2]) / (env.high[:2] - env.low[:2])) <= 0.5
    assert np.mean(kept_low) == pytest.approx(0.3, abs=0.03)
    assert np.mean(kept_high) == pytest.approx(0.3, abs=0.03)
    assert not any(a and b for a, b in zip(kept_low, kept_high))  # disjoint regions


def test_coverage_needs_initial_positions():
    class Bare(gym.Env):
        action_space = gym.spaces.Box(-1, 1, (2,))

    with pytest.raises(UserError, match="initial object/goal positions"):
        parse_shift("coverage:low-0.50").accepts(Bare())


def test_uniform_mean_quantile_matches_monte_carlo():
    x = np.random.default_rng(0).random((100_000, 4)).mean(1)
    for p in (0.1, 0.3, 0.5):
        assert uniform_mean_quantile(p, 4) == pytest.approx(np.quantile(x, p), abs=0.005)


def test_metaworld_env_takes_a_shift_and_collect_keeps_only_region_seeds():
    from steerlab.data.collect import collect_demos
    from steerlab.envs.metaworld_env import episode_seeds, make_env

    env = make_env("reach-v3", shift="actuation:offset-x+0.10")
    assert env.offset[0] == pytest.approx(0.1)
    eps = collect_demos("reach-v3", 3, "mixed", seed=0, max_steps=3, progress=False, shift="coverage:low-0.50")
    shift, probe = parse_shift("coverage:low-0.50"), make_env("reach-v3")
    for ep in eps:
        probe.reset(seed=ep.meta["seed"])
        assert shift.accepts(probe)
    plain = collect_demos("reach-v3", 3, "mixed", seed=0, max_steps=3, progress=False)
    assert [e.meta["seed"] for e in plain] == episode_seeds("demo", 0, 3)  # no shift: the same demos as before


def test_cli_unknown_shift_is_one_line_exit_2(tmp_path, capsys):
    from steerlab.cli import main

    code = main(["collect", "--task", "reach-v3", "--episodes", "1", "--shift", "wind:strong",
                 "--out", str(tmp_path / "ds")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "unknown shift 'wind:strong'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "ds").exists()
