"""The sampler-mode rule (`--sampler-noise-scale auto`): decided from the base both ways, recorded, reused on a
resume, and the mode the run trains in, evaluates its curve in and deploys in."""

import json

import pytest
import torch

import steerlab.train.finetune.mode as mode
from steerlab.cli import main
from steerlab.core.checkpoint import load_policy
from steerlab.core.errors import UserError
from steerlab.envs.seeds import SEED_OFFSETS
from steerlab.train.finetune import Finetuner
from steerlab.train.finetune.mode import choose_sampler_mode, measure_modes
from tests.train.test_vector_loop import POLICY, _cfg


@pytest.fixture
def toy_policy(policy_module):
    return policy_module("mode_toy_policy", POLICY)


def _res(success, returns):
    return {"success": success, "per_episode": [{"return": r} for r in returns]}


def test_the_rule():
    assert choose_sampler_mode(_res(0.5, [0]), _res(0.5, [9])) == 0.0  # a tie: ε = 0
    assert choose_sampler_mode(_res(0.4, [9]), _res(0.5, [0])) == 1.0
    assert choose_sampler_mode(_res(0.6, [0]), _res(0.5, [9])) == 0.0
    # no success in either mode (an env without one): mean return decides, `return_mean` first
    assert choose_sampler_mode(_res(0.0, [-5, -3]), _res(0.0, [-2, -2])) == 1.0
    assert choose_sampler_mode({"success": 0.0, "return_mean": -1.0}, _res(0.0, [-2])) == 0.0


def test_measurement_uses_the_mode_split_and_the_same_episodes(toy_policy):
    from steerlab.envs.registry import resolve_env
    from steerlab.policies.factory import load_policy_source

    policy = load_policy_source(toy_policy)[0]
    eps0, sampled = measure_modes(policy, resolve_env("steerlab/PointReach-v0", max_steps=10), 3, seed=2)
    seeds = [e["seed"] for e in eps0["per_episode"]]
    assert seeds == [e["seed"] for e in sampled["per_episode"]]
    assert all(SEED_OFFSETS["mode"] <= s < SEED_OFFSETS["mode"] + 1_000_000 for s in seeds)
    assert eps0["per_episode"] != sampled["per_episode"]  # the noise reached the sampler in one of them


def _decided(monkeypatch, eps0, sampled, calls):
    def fake(policy, env, episodes, seed):
        calls.append(episodes)
        return _res(eps0, [0.0] * episodes), _res(sampled, [0.0] * episodes)

    monkeypatch.setattr(mode, "measure_modes", fake)


@pytest.mark.parametrize("eps0,sampled,chosen", [(0.5, 0.5, 0.0), (0.2, 0.6, 1.0)])
def test_auto_trains_evaluates_and_deploys_in_the_chosen_mode(toy_policy, tmp_path, monkeypatch, eps0, sampled, chosen):
    calls = []
    _decided(monkeypatch, eps0, sampled, calls)
    out = tmp_path / "r"
    t = Finetuner(_cfg(toy_policy, out, steps=60, method="action-residual", sampler_noise_scale="auto",
                       mode_episodes=4, final_episodes=2), progress=False)
    noises = []
    chunk = t.adapter.chunk
    monkeypatch.setattr(t.adapter, "chunk", lambda obs, f, a, noise: noises.append(noise) or chunk(obs, f, a, noise))
    t.run()
    assert calls == [4]
    largest = max(float(n.abs().max()) for n in noises)
    assert (largest == 0.0) if chosen == 0.0 else (largest > 0.5)
    record = {"rule": "auto", "eps0": eps0, "sampled": sampled, "episodes": 4, "chosen": chosen}
    config = json.loads((out / "config.json").read_text())
    assert record.items() <= config["sampler_mode"].items() and config["finetune"]["sampler_noise_scale"] == "auto"
    result = json.loads((out / "result.json").read_text())
    assert record.items() <= result["sampler_mode"].items()
    assert result["final_trained_mode"] == ("eps0" if chosen == 0.0 else "sampled")
    steered = load_policy(out / "policy")
    assert steered.sampler_noise_scale == chosen
    # with no noise given, the deployed policy draws its own in the trained mode
    obs = torch.randn(3, 4)
    torch.manual_seed(5)
    own = steered.sample_chunk(obs)
    torch.manual_seed(5)
    assert torch.equal(own, steered.sample_chunk(obs, chosen * torch.randn(3, *steered.noise_shape)))


def test_resume_reuses_the_recorded_decision(toy_policy, tmp_path, monkeypatch):
    calls = []
    _decided(monkeypatch, 0.9, 0.1, calls)
    out = tmp_path / "r"
    Finetuner(_cfg(toy_policy, out, steps=60, method="action-residual",
                   sampler_noise_scale="auto", mode_episodes=3), progress=False).run()
    _decided(monkeypatch, 0.0, 1.0, calls)  # would now choose sampled: must not be asked
    resumed = Finetuner(_cfg(toy_policy, out, steps=120, method="action-residual", sampler_noise_scale="auto",
                             mode_episodes=3), progress=False)
    resumed.run()
    assert calls == [3] and resumed.noise_scale == 0.0
    assert json.loads((out / "config.json").read_text())["sampler_mode"]["chosen"] == 0.0


def test_methods_that_choose_the_noise_and_explicit_scales_evaluate_nothing(toy_policy, tmp_path, monkeypatch):
    calls = []
    _decided(monkeypatch, 1.0, 0.0, calls)
    t = Finetuner(_cfg(toy_policy, tmp_path / "d", steps=30, sampler_noise_scale="auto"), progress=False)  # dsrl
    t.run()
    assert calls == [] and t.noise_scale == 1.0 and t.sampler_mode["chosen"] == 1.0 and "dsrl" in t.sampler_mode["reason"]
    t = Finetuner(_cfg(toy_policy, tmp_path / "f", steps=30, method="action-residual", sampler_noise_scale=1),
                  progress=False)
    t.run()
    assert calls == [] and t.sampler_mode == {"rule": "fixed", "chosen": 1.0} and t.noise_scale == 1
    with pytest.raises(UserError, match="'auto' or a finite number"):
        _cfg(toy_policy, tmp_path / "x", sampler_noise_scale="sometimes")


def test_cli_default_is_auto_and_evaluate_runs_the_trained_mode(toy_policy, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["finetune", toy_policy, "--method", "action-residual", "--env", "steerlab/PointReach-v0", "--max-steps", "10",
            "--env-steps", "40", "--warmup", "5", "--eval-every", "40", "--eval-episodes", "1", "--final-episodes", "2",
            "--mode-episodes", "2", "--out", str(out), "--sac-json", '{"hidden": 16, "batch_size": 8}', "--no-tensorboard"]
    assert main(argv) == 0, capsys.readouterr().err
    chosen = json.loads((out / "result.json").read_text())["sampler_mode"]["chosen"]
    assert "sampler mode (base over 2 episodes" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--episodes", "1", "--n-envs", "1"]) == 0
    evals = list((out / "policy.evals").glob("*.json"))
    assert [p.name for p in evals] == [f"eval_steerlab_PointReach-v0_seed0_ep1_noise{chosen:g}_max10.json"]
    assert json.loads(evals[0].read_text())["noise_scale"] == chosen
