import json

import numpy as np
from conftest import TINY_POLICY

from steerlab.cli import main
from steerlab.eval.metrics import smoothness, summarize_episodes, wilson_interval
from steerlab.eval.rollout import rollout_episodes
from steerlab.policies.flow_matching import FlowMatchingPolicy, FlowPolicyConfig


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(5, 10)
    assert abs(lo - 0.2366) < 1e-3 and abs(hi - 0.7634) < 1e-3
    assert wilson_interval(0, 50)[0] == 0.0 and wilson_interval(50, 50)[1] == 1.0


def test_smoothness_of_known_paths():
    t = np.arange(10, dtype=float)[:, None]
    line = np.hstack([t, 0 * t, 0 * t])
    s = smoothness(line)
    assert s["velocity"] == 1.0 and s["acceleration"] == 0.0 and s["jerk"] == 0.0
    s = smoothness(np.hstack([t**3, 0 * t, 0 * t]))
    assert np.isclose(s["jerk"], 6.0)


def test_summary_counts():
    eps = [{"success": i < 3, "length": 10 + i, "return": float(i), "smoothness": {"velocity": 1, "acceleration": 2,
                                                                                   "jerk": 3}}
           for i in range(4)]
    s = summarize_episodes(eps)
    assert s["success"] == 0.75 and s["episodes"] == 4 and s["smoothness"]["jerk"] == 3
    # return: mean 1.5, sample std sqrt(5/3), Student-t 95% with 3 degrees of freedom (3.182)
    half = 3.182 * np.sqrt(5 / 3) / 2
    assert s["return_mean"] == 1.5 and np.allclose(s["return_ci95"], [1.5 - half, 1.5 + half])
    assert s["nulls"] == {}


def test_summary_of_an_env_without_success_or_position_says_so():
    eps = [{"success": None, "success_reported": False, "length": 5, "return": -3.0, "smoothness": None}]
    s = summarize_episodes(eps)
    assert s["success"] is None and s["ci95"] is None and not s["success_reported"]
    assert s["return_mean"] == -3.0 and s["return_ci95"] is None  # one episode: no interval
    assert set(s["nulls"]) == {"success", "ci95", "successes", "return_ci95", "return_se", "smoothness.velocity",
                               "smoothness.acceleration", "smoothness.jerk"}


def test_rollout_is_independent_of_parallelism():
    policy = FlowMatchingPolicy(FlowPolicyConfig(**TINY_POLICY, conditioning="concat")).eval()
    a = rollout_episodes(policy, "reach-v3", 3, seed=0, n_envs=1, max_steps=12, asynchronous=False, progress=False)
    b = rollout_episodes(policy, "reach-v3", 3, seed=0, n_envs=3, max_steps=12, asynchronous=False, progress=False)
    assert [e["seed"] for e in a] == [e["seed"] for e in b]
    np.testing.assert_allclose([e["smoothness"]["jerk"] for e in a], [e["smoothness"]["jerk"] for e in b], rtol=1e-4)
    assert all(e["length"] == 12 for e in a)


def test_cli_collect_pretrain_evaluate(tmp_path, capsys):
    ds, ck = tmp_path / "ds", tmp_path / "ck"
    assert main(["collect", "--task", "reach-v3", "--episodes", "2", "--quality", "mixed", "--max-steps", "30",
                 "--out", str(ds)]) == 0
    assert main(["pretrain", "--dataset", str(ds), "--out", str(ck), "--steps", "5", "--batch-size", "8",
                 "--policy-json", json.dumps(TINY_POLICY)]) == 0
    assert main(["evaluate", str(ck), "--episodes", "2", "--n-envs", "1", "--max-steps", "10"]) == 0
    res = json.loads((tmp_path / "ck.evals" / "eval_reach-v3_seed0_ep2_noise1_max10.json").read_text())
    assert res["episodes"] == 2 and 0 <= res["ci95"][0] <= res["success"] <= res["ci95"][1] <= 1
    assert "success" in capsys.readouterr().out


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["collect", "--task", "push-wal-v3", "--episodes", "1", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown environment 'push-wal-v3'" in err and "push-wall-v3" in err
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_noise_scale_zero_integrates_every_chunk_from_zero_noise():
    import pytest

    policy = FlowMatchingPolicy(FlowPolicyConfig(**TINY_POLICY, conditioning="concat")).eval()
    seen = []

    class Recorder:
        n_action_steps, chunk_shape = policy.n_action_steps, policy.chunk_shape

        def predict_chunk(self, obs, *, noise=None):
            seen.append(noise.clone())
            return policy.predict_chunk(obs, noise=noise)

    rollout_episodes(Recorder(), "reach-v3", 2, seed=0, n_envs=2, max_steps=6, asynchronous=False, progress=False,
                     noise_scale=0.0)
    assert seen and all(bool((n == 0).all()) for n in seen)
    seen.clear()
    rollout_episodes(Recorder(), "reach-v3", 1, seed=0, n_envs=1, max_steps=6, asynchronous=False, progress=False)
    assert all(float(n.abs().sum()) > 0 for n in seen)
    with pytest.raises(ValueError, match="noise_scale"):
        rollout_episodes(policy, "reach-v3", 1, noise_scale=float("nan"), progress=False)
