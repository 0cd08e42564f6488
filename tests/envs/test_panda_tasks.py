"""panda-gym push / pick-and-place: flat observations, seed-pure episodes, horizon, rewards, experts, demos."""

import numpy as np
import pytest

pytest.importorskip("panda_gym")

from steerlab.core.errors import UserError  # noqa: E402
from steerlab.envs import panda_tasks  # noqa: E402
from steerlab.envs.panda_experts import expert_policy  # noqa: E402
from steerlab.envs.panda_tasks import make_pick_and_place, make_push  # noqa: E402


@pytest.fixture(scope="module")
def push():
    env = make_push(seed=0, max_steps=10)
    yield env
    env.close()


def _rollout(env, seed, actions):
    obs, info = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, *_ = env.step(a)
        out.append(obs)
    return np.stack(out)


def test_flat_observation_layout_and_spaces():
    for make, obs_dim, act_dim in ((make_push, 24, 3), (make_pick_and_place, 25, 4)):
        env = make(seed=0)
        obs, info = env.reset(seed=3)
        assert obs.shape == (obs_dim,) == env.observation_space.shape and obs.dtype == np.float32
        assert env.action_space.shape == (act_dim,)
        raw = env.raw._get_obs()
        np.testing.assert_array_equal(obs[-6:-3], raw["desired_goal"])   # layout: [observation, desired, achieved]
        np.testing.assert_array_equal(obs[-3:], raw["achieved_goal"])
        np.testing.assert_allclose(info["ee_pos"], obs[:3], atol=1e-6)
        env.close()


def test_episode_is_a_pure_function_of_its_seed(push):
    actions = np.random.default_rng(0).uniform(-1, 1, (10, 3)).astype(np.float32)
    first = _rollout(push, 7, actions)
    _rollout(push, 8, actions[::-1])   # a different episode in between (moves the cube, warms the solver)
    np.testing.assert_array_equal(_rollout(push, 7, actions), first)
    other = make_push(seed=123, max_steps=10)     # a fresh env with another construction seed: same episode
    np.testing.assert_array_equal(_rollout(other, 7, actions), first)
    other.close()


def test_unseeded_resets_follow_the_construction_seed():
    a, b, c = make_push(seed=1), make_push(seed=1), make_push(seed=2)
    obs_a = [a.reset()[0] for _ in range(3)]
    obs_b = [b.reset()[0] for _ in range(3)]
    obs_c = [c.reset()[0] for _ in range(3)]
    np.testing.assert_array_equal(np.stack(obs_a), np.stack(obs_b))
    assert not np.array_equal(obs_a[0], obs_a[1]) and not np.array_equal(obs_a[0], obs_c[0])
    for env in (a, b, c):
        env.close()


def _expert_episode(env, seed, steps=50):
    expert = expert_policy(env.task)
    obs, info = env.reset(seed=seed)
    rows = [(None, 0.0, False, False, info)]
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(expert(obs))
        rows.append((obs, r, term, trunc, info))
        if term or trunc:
            break
    return rows


def test_horizon_truncates_and_success_is_sticky_and_can_terminate():
    env = make_push(seed=0, max_steps=50, terminate_on_success=False, reward="sparse")
    # an episode the expert solves before the horizon (it solves most, see the test below)
    episodes = (_expert_episode(env, s) for s in range(2_000_000, 2_000_010))
    rows = next(r for r in episodes if any(row[4]["success"] for row in r))
    assert len(rows) == 51 and rows[0][4]["is_success"] is False
    seen = False
    for t, (_, r, term, trunc, info) in enumerate(rows[1:]):
        seen |= info["success"]
        assert info["is_success"] == seen          # success at any step so far
        assert r == float(info["success"])         # sparse: 1 on success, else 0
        assert not term and trunc == (t == 49)     # no termination unless asked; the horizon truncates
    assert seen
    env.close()

    env = make_push(seed=0, max_steps=50, terminate_on_success=True)
    rows = next(r for r in (_expert_episode(env, s) for s in range(2_000_000, 2_000_010)) if r[-1][2])
    for _, r, _, _, info in rows[1:]:
        assert r == pytest.approx(-info["distance"]) and r <= 0   # dense: −‖object − goal‖
    _, _, term, trunc, info = rows[-1]
    assert term and not trunc and info["success"] and len(rows) < 51
    env.close()


def test_bad_arguments_are_one_line_user_errors(push):
    with pytest.raises(UserError, match="reward"):
        make_push(reward="shaped")
    with pytest.raises(UserError, match="max_steps"):
        make_push(max_steps=0)
    with pytest.raises(UserError, match="unsupported options goal_offset"):
        make_push(goal_offset=[0.1, 0, 0])
    with pytest.raises(UserError, match="unknown panda-gym task"):
        panda_tasks.make_env("PandaSlide-v3")
    push.reset(seed=0)
    with pytest.raises(UserError, match="shape"):
        push.step(np.zeros(4, np.float32))
    with pytest.raises(UserError, match="finite"):
        push.step(np.array([np.nan, 0, 0], np.float32))


@pytest.mark.parametrize("task", panda_tasks.TASKS)
def test_scripted_expert_solves_most_seeded_episodes(task):
    env, expert = panda_tasks.make_env(task, max_steps=50, terminate_on_success=True), expert_policy(task)
    wins = 0
    for seed in range(2_000_000, 2_000_008):
        obs, info = env.reset(seed=seed)
        for _ in range(50):
            obs, _, term, trunc, info = env.step(expert(obs))
            if term or trunc:
                break
        wins += info["is_success"]
    env.close()
    assert wins >= 7, f"{task}: the expert solved {wins}/8 episodes"


def test_registry_routes_panda_tasks_to_the_panda_family():
    from steerlab.envs.registry import make_env, resolve_env

    spec = resolve_env("PandaPush-v3")
    assert (spec.family, spec.max_steps, spec.position_key) == ("panda", 50, "ee_pos")
    env = make_env(resolve_env("PandaPickAndPlace-v3", max_steps=7), seed=0, terminate_on_success=True)
    assert isinstance(env, panda_tasks.PandaTask) and env.max_steps == 7 and env.terminate_on_success


def test_collect_looks_the_expert_up_by_family_and_is_deterministic():
    from steerlab.data.collect import collect_demos, expert_for
    from steerlab.envs.registry import EnvSpec

    assert expert_for(EnvSpec("panda", "PandaPush-v3")) is expert_policy("PandaPush-v3")
    with pytest.raises(UserError, match="no scripted expert"):
        expert_for(EnvSpec("gym", "Pendulum-v1"))
    a = collect_demos("PandaPickAndPlace-v3", 3, "mixed", seed=4, max_steps=20, progress=False, noise_scale=2.0)
    b = collect_demos("PandaPickAndPlace-v3", 3, "mixed", seed=4, max_steps=20, progress=False, noise_scale=2.0)
    assert [e.observations.shape[1] for e in a] == [25] * 3 and all(e.actions.shape[1] == 4 for e in a)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.observations, y.observations)
        np.testing.assert_array_equal(x.actions, y.actions)
    assert {e.meta["noise_std"] for e in a} <= {0.2, 0.6, 1.2}


def test_cli_collect_pretrain_evaluate_finetune_on_panda(tmp_path, capsys):
    """The whole chain from the command line, the panda family found by name (horizon 50 by default)."""
    import json

    from steerlab.cli import main
    from steerlab.data.dataset import read_dataset

    ds, ckpt, run = tmp_path / "ds", tmp_path / "base", tmp_path / "run"
    assert main(["collect", "--task", "PandaPush-v3", "--episodes", "2", "--quality", "expert", "--out", str(ds)]) == 0
    info = read_dataset(ds).info["steerlab"]
    assert info["env"] == "panda" and info["max_steps"] == 50
    assert main(["pretrain", "--dataset", str(ds), "--out", str(ckpt), "--steps", "3", "--batch-size", "8"]) == 0
    assert main(["evaluate", str(ckpt), "--episodes", "2", "--n-envs", "2", "--out", str(tmp_path / "e.json")]) == 0
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["env"]["family"] == "panda" and res["episodes"] == 2 and res["length_mean"] <= 50
    assert res["smoothness"]["jerk"] > 0   # the end effector is tracked (info["ee_pos"])
    assert main(["finetune", str(ckpt), "--method", "zprl", "--env-steps", "40", "--warmup", "5", "--eval-every", "40",
                 "--eval-episodes", "1", "--out", str(run), "--sac-json", '{"hidden": 16, "batch_size": 8}']) == 0, \
        capsys.readouterr().err
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["env"]["family"] == "panda" and cfg["env"]["id"] == "PandaPush-v3" and cfg["env"]["max_steps"] == 50
