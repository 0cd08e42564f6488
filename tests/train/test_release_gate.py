"""The release gate (train/finetune/gate.py): a run releases the base when its steered policy scored below it."""

import json

import numpy as np
import pytest
import torch

from steerlab.cli import main
from steerlab.core.checkpoint import load_policy
from steerlab.eval.rollout import evaluate
from steerlab.policies.factory import load_policy_source
from steerlab.train.finetune.gate import decide, paired_differences


def ep(ret, success=None):
    return {"return": ret, "success": success, "success_reported": success is not None}


def test_decision_is_success_first_then_return():
    # success reported: success decides even when the return disagrees
    d = paired_differences([ep(1.0, True), ep(1.0, False)], [ep(5.0, False), ep(5.0, False)])
    assert decide(d) == ("steered", "success") and d["success"]["difference"] == pytest.approx(0.5)
    assert decide(paired_differences([ep(9.0, False)], [ep(1.0, True)])) == ("base", "success")
    # success tied: the return decides
    d = paired_differences([ep(1.0, True), ep(2.0, False)], [ep(1.5, True), ep(2.0, False)])
    assert decide(d) == ("base", "return") and d["return"]["difference"] == pytest.approx(-0.25)
    # no success signal: the return only (a small mean deficit releases the base); an exact tie keeps the steering
    d = paired_differences([ep(-126.5), ep(-126.0)], [ep(-126.2), ep(-126.2)])
    assert "success" not in d and decide(d) == ("base", "return")
    assert decide(paired_differences([ep(-5.0)], [ep(-5.0)])) == ("steered", "tie")


def run(policy, out, *extra):
    argv = ["finetune", policy, "--method", "action-residual", "--env", "Pendulum-v1", "--max-steps", "20",
            "--env-steps", "60", "--warmup", "5", "--eval-every", "60", "--eval-episodes", "1", "--out", str(out),
            "--sac-json", '{"hidden": 16, "batch_size": 8}', "--seed", "3", "--final-episodes", "3", *extra]
    return main(argv)


def test_gate_record_in_result_and_checkpoint(pendulum_policy, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(pendulum_policy, out, "--release-gate-episodes", "4") == 0, capsys.readouterr().err
    printed = capsys.readouterr()
    result = json.loads((out / "result.json").read_text())
    gate = result["release"]
    assert gate["episodes"] == 4 and gate["split"] == "gate" and "success" not in gate
    assert result["released"] == gate["released"] in ("steered", "base")
    assert "release gate, 4 paired episodes: return" in printed.out + printed.err
    config = json.loads((out / "policy" / "config.json").read_text())["config"]
    assert config["released"] == result["released"] and config["release_gate"] == gate
    # the gate's numbers are the two policies on the gate split, paired
    policy = load_policy(out / "policy")
    means = {}
    for released in ("steered", "base"):
        policy.released = released
        res = evaluate(policy, "Pendulum-v1", 4, seed=3, n_envs=1, asynchronous=False, progress=False,
                       max_steps=20, split="gate")
        means[released] = res["return_mean"]
    assert gate["return"]["steered"] == pytest.approx(means["steered"])
    assert gate["return"]["base"] == pytest.approx(means["base"])


def test_a_worse_steered_policy_releases_the_base(pendulum_policy, tmp_path, capsys, monkeypatch):
    import steerlab.train.finetune.gate as gate_module

    def rollouts(policy, spec, episodes, **kw):  # the steered policy scores below the base on every episode
        return [ep(-200.0 if policy.released == "steered" else -100.0) for _ in range(episodes)]

    monkeypatch.setattr(gate_module, "rollout_episodes", rollouts)
    out = tmp_path / "run"
    assert run(pendulum_policy, out, "--release-gate-episodes", "3") == 0
    printed = capsys.readouterr()
    assert "WARNING: release gate, 3 paired episodes" in printed.err and "released the BASE" in printed.err
    assert "released: the BASE" in printed.out
    result = json.loads((out / "result.json").read_text())
    assert result["released"] == "base" and result["release"]["return"]["difference"] == -100.0
    # policy/ acts exactly as the base (same noise, same chunks), and result.json's final numbers measure it
    released = load_policy(out / "policy")
    base, _, _ = load_policy_source(pendulum_policy)
    obs = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    noise = np.random.default_rng(1).standard_normal((5, 4, 1)).astype(np.float32)
    np.testing.assert_array_equal(released.predict_chunk(obs, noise=torch.from_numpy(noise)),
                                  base.sample_chunk(torch.from_numpy(obs), torch.from_numpy(noise)).detach().numpy())
    base_final = evaluate(base, "Pendulum-v1", 3, seed=3, n_envs=1, asynchronous=False, progress=False,
                          max_steps=20, noise_scale=0.0)
    assert result["final_eps0_return"] == pytest.approx(base_final["return_mean"])
    # the actor is kept: the steering can be switched back on
    released.released = "steered"
    assert not np.array_equal(released.predict_chunk(obs, noise=torch.from_numpy(noise)),
                              base.sample_chunk(torch.from_numpy(obs), torch.from_numpy(noise)).detach().numpy())


def test_gate_off_and_bad_count(pendulum_policy, tmp_path, capsys):
    out = tmp_path / "off"
    assert run(pendulum_policy, out, "--release-gate-episodes", "0") == 0
    result = json.loads((out / "result.json").read_text())
    assert result["released"] == "steered" and result["release"] is None and "no release gate" in result["nulls"][
        "release"]
    assert run(pendulum_policy, tmp_path / "bad", "--release-gate-episodes", "-1") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--release-gate-episodes must be an integer >= 0, got -1" in err
