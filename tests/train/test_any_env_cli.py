"""`steerlab finetune <module:factory> --env Pendulum-v1`: a protocol policy on a Gymnasium env, from the CLI."""

import json
import math

import pytest

from steerlab.cli import main


def strict_loads(text: str):
    def refuse(name):
        raise ValueError(f"non-strict JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("method", ["action-residual", "dsrl"])
def test_finetune_and_evaluate_a_factory_policy_on_pendulum(pendulum_policy, tmp_path, method, capsys):
    out = tmp_path / method
    argv = ["finetune", pendulum_policy, "--method", method, "--env", "Pendulum-v1", "--max-steps", "20",
            "--env-steps", "60", "--warmup", "5", "--eval-every", "60", "--eval-episodes", "1", "--out", str(out),
            "--sac-json", '{"hidden": 16, "batch_size": 8}', "--seed", "3", "--final-episodes", "3"]
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "success: not reported by this env" in printed and "success 0.00" not in printed
    result = strict_loads((out / "result.json").read_text())  # strict JSON: no NaN / Infinity literals
    assert result["final_sampled"] is None and "never reported success" in result["nulls"]["final_sampled"]
    assert result["final_sampled_return"] < 0 and len(result["final_sampled_return_ci95"]) == 2
    assert result["final_best_by"] == "return" and result["final_best_return"] == max(
        result["final_sampled_return"], result["final_eps0_return"])
    assert result["auc"] is None and result["auc_return"] < 0 and result["start_return"] < 0
    assert result["regressed"]["metric"] == "return"  # one episode per evaluation: no noise estimate
    assert result["regressed"]["verdict"].startswith("undetermined")
    run = json.loads((out / "config.json").read_text())
    assert run["env"]["family"] == "gym" and run["env"]["id"] == "Pendulum-v1" and run["env"]["max_steps"] == 20
    policy_cfg = json.loads((out / "policy" / "config.json").read_text())
    assert policy_cfg["config"]["env"]["id"] == "Pendulum-v1"
    assert policy_cfg["config"]["base"]["config"]["factory"] == pendulum_policy
    rows = [strict_loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["explore_return"] < 0 and rows[0]["explore_return"] is None
    assert rows[-1]["step"] >= 60 and rows[-1]["eval_success"] is None  # Pendulum reports no success
    assert "never reported success" in rows[-1]["nulls"]["eval_success"]
    assert all(math.isfinite(r["eval_return"]) and r["eval_return"] < 0 for r in rows)  # its reward is -cost
    assert main(["evaluate", str(out / "policy"), "--episodes", "2", "--n-envs", "1",
                 "--out", str(tmp_path / "eval.json")]) == 0
    assert "return -" in capsys.readouterr().out
    res = strict_loads((tmp_path / "eval.json").read_text())
    assert res["env"]["id"] == "Pendulum-v1" and res["episodes"] == 2 and res["length_mean"] == 20
    assert res["smoothness"]["jerk"] is None and "end-effector" in res["nulls"]["smoothness.jerk"]  # not invented
    assert res["success"] is None and res["return_mean"] < 0 and len(res["return_ci95"]) == 2


def test_wrong_env_for_the_policy_is_one_line(pendulum_policy, tmp_path, capsys):
    assert main(["finetune", pendulum_policy, "--method", "action-residual", "--env", "steerlab/PointReach-v0",
                 "--out", str(tmp_path / "x"), "--env-steps", "10"]) == 2
    assert "has observations (4,) and actions (2,), but the policy expects (3,) and (1,)" in capsys.readouterr().err


def test_method_needing_more_of_the_protocol_is_one_line(pendulum_policy, tmp_path, capsys):
    assert main(["finetune", pendulum_policy, "--method", "zprl", "--env", "Pendulum-v1",
                 "--out", str(tmp_path / "x"), "--env-steps", "10"]) == 2
    assert "cannot be steered by steering method 'zprl': it lacks `embed_dim" in capsys.readouterr().err
