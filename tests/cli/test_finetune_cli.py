"""`steerlab finetune` is generated from FinetuneConfig: the CLI run and the library run of one config are one run."""

import json
import shlex

import pytest
from safetensors.numpy import load_file

from steerlab.cli import build_parser, main
from steerlab.cli.finetune import config_from_args, resume_command
from steerlab.core.errors import UserError
from steerlab.rl.sac import SACConfig
from steerlab.train.finetune import FinetuneConfig, finetune

TINY = ["--env", "reach-v3", "--env-steps", "60", "--max-steps", "20", "--warmup", "10", "--eval-every", "30",
        "--eval-episodes", "1", "--checkpoint-every", "30", "--buffer-size", "500", "--final-episodes", "0",
        "--sampler-noise-scale", "1", "--no-tensorboard", "--seed", "3", "--sac.hidden", "16", "--sac.batch-size", "8"]


def parse(argv: list[str]) -> FinetuneConfig:
    args = build_parser("finetune").parse_args(["finetune", *argv])
    return config_from_args(args, args.argv, args.parser)


def library_cfg(base, out) -> FinetuneConfig:
    return FinetuneConfig(base=str(base), method="zprl", env="reach-v3", env_steps=60, max_steps=20,
                          warmup_decisions=10, eval_every=30, eval_episodes=1, checkpoint_every=30, buffer_size=500,
                          final_episodes=0, sampler_noise_scale=1.0, tensorboard=False, seed=3, out=str(out),
                          sac=SACConfig(hidden=16, batch_size=8), sac_explicit=["batch_size", "hidden"])


def rows(out):
    return [{k: v for k, v in json.loads(x).items() if k != "steps_per_s"}
            for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_defaults_are_the_dataclass_defaults():
    cfg = parse(["base"])
    assert cfg.to_dict() == FinetuneConfig(base="base").to_dict()  # one source of defaults: CLI == library


def test_cli_run_and_library_run_of_one_config_are_the_same_run(base_ckpt, tmp_path):
    cli_out, lib_out = tmp_path / "cli", tmp_path / "lib"
    assert parse([str(base_ckpt), *TINY, "--out", str(cli_out)]).to_dict() == library_cfg(base_ckpt, cli_out).to_dict()
    assert main(["finetune", str(base_ckpt), *TINY, "--out", str(cli_out)]) == 0
    finetune(library_cfg(base_ckpt, lib_out), progress=False)
    assert rows(cli_out) == rows(lib_out)
    a, b = load_file(str(cli_out / "policy" / "model.safetensors")), load_file(str(lib_out / "policy" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_nested_options_config_file_and_precedence(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"env_steps": 1234, "seed": 7, "sac": {"hidden": 64}, "steering": {"latent_rms_ratio": 0.2}}))
    cfg = parse(["base", "--config", str(path), "--seed", "9", "--sac.tau", "0.01", "--steering.latent-rms-ratio", "0.5",
                 "--method", "zprl"])
    assert cfg.env_steps == 1234 and cfg.seed == 9  # the line overrides the file
    assert cfg.sac.hidden == 64 and cfg.sac.tau == 0.01 and cfg.sac_explicit == ["hidden", "tau"]
    assert cfg.steering == {"latent_rms_ratio": 0.5}
    assert parse(["base", "--preset", "paper"]).sac.hidden == 256 and parse(["base"]).sac.hidden == 128


def test_bad_options_are_one_line(tmp_path):
    (tmp_path / "bad.json").write_text('{"env_step": 5}')
    with pytest.raises(UserError, match="unknown fields \\['env_step'\\]"):
        parse(["base", "--config", str(tmp_path / "bad.json")])
    with pytest.raises(UserError, match="latent_rms"):
        parse(["base", "--method", "dsrl", "--steering.latent-rms-ratio", "0.5"])
    with pytest.raises(SystemExit):
        parse(["base", "--sac.critic-layer-norm", "maybe"])


def test_resume_command_spells_what_differs_from_the_defaults(tmp_path):
    cfg = parse(["base", "--out", str(tmp_path / "r"), "--env", "reach-v3", "--sac.hidden", "64", "--seed", "4",
                 "--steering.latent-rms-ratio", "0.5", "--no-tensorboard"])

    class Env:
        id = "reach-v3"

    line = resume_command(cfg, Env())
    again = parse(shlex.split(line)[2:])
    assert again.to_dict() == cfg.to_dict()


def test_a_warmup_as_long_as_the_run_is_reported(base_ckpt, tmp_path, capsys):
    argv = [a if a != "60" else "20" for a in TINY]  # 20 env steps; warm-up 10 decisions x 2 steps = 20
    assert main(["finetune", str(base_ckpt), *argv, "--out", str(tmp_path / "r")]) == 0
    assert "no SAC update will run" in capsys.readouterr().err
