import numpy as np
import pytest

from steerlab.data.collect import collect_demos, get_preset
from steerlab.envs.metaworld_env import BENCHMARK_TASKS, episode_seeds, expert_policy, make_env


def test_unknown_task_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown Meta-World task 'push-wal-v3'.*push-wall-v3"):
        make_env("push-wal-v3")


def test_unknown_quality_and_bad_reward():
    with pytest.raises(ValueError, match="presets: expert, mixed, noisy"):
        get_preset("perfect")
    with pytest.raises(ValueError, match="reward"):
        make_env("reach-v3", reward="shaped")


def test_reset_seed_fixes_the_initial_state_and_seeds_differ():
    env = make_env("push-wall-v3", seed=0)
    a, _ = env.reset(seed=5)
    b, _ = env.reset(seed=6)
    c, _ = make_env("push-wall-v3", seed=3).reset(seed=5)
    np.testing.assert_array_equal(a, c)
    assert not np.allclose(a, b)
    assert a.shape == (39,) and a.dtype == np.float32


def test_seed_splits_are_disjoint():
    demo, train, ev = (set(episode_seeds(s, seed, 1000)) for s, seed in (("demo", 0), ("train", 0), ("eval", 0)))
    assert not (demo & train or demo & ev or train & ev)
    with pytest.raises(ValueError, match="seed split"):
        episode_seeds("test", 0, 1)


def test_horizon_truncates_and_success_terminates():
    env = make_env("reach-v3", seed=0, max_steps=5)
    env.reset(seed=1)
    flags = [env.step(np.zeros(4))[2:4] for _ in range(5)]
    assert flags[-1] == (False, True) and not any(any(f) for f in flags[:-1])

    env = make_env("reach-v3", seed=0, max_steps=200, terminate_on_success=True, reward="sparse")
    obs, _ = env.reset(seed=1)
    expert = expert_policy("reach-v3")
    for _ in range(200):
        obs, r, term, trunc, info = env.step(expert(obs))
        if term or trunc:
            break
    assert term and not trunc and info["is_success"] and r == 1.0


def test_wrong_action_shape():
    env = make_env("reach-v3")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must have shape"):
        env.step(np.zeros(3))


def test_benchmark_tasks_exist():
    for task in BENCHMARK_TASKS:
        expert_policy(task)


def test_collect_is_seeded_and_corrupts_mixed_quality():
    a = collect_demos("reach-v3", 3, "mixed", seed=0, max_steps=40, progress=False)
    b = collect_demos("reach-v3", 3, "mixed", seed=0, max_steps=40, progress=False)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.actions, y.actions)
    clean = collect_demos("reach-v3", 3, "expert", seed=0, max_steps=40, progress=False)
    assert all(e.meta["noise_std"] == 0 for e in clean)
    assert any(e.meta["noise_std"] > 0 for e in a)
