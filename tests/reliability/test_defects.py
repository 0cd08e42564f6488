"""One test per defect of issue 10, named after it: what a user could lose or be misled by, now refused."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import TINY_POLICY, make_episodes
from safetensors.torch import load_file, save_file

from steerlab.cli import main
from steerlab.core.checkpoint import load_policy
from steerlab.core.errors import CheckpointError, LockedError, UserError
from steerlab.core.io import atomic_dir, recover_dir
from steerlab.core.outdir import FolderLock
from steerlab.data.dataset import write_dataset
from steerlab.rl.sac import SACConfig
from steerlab.train.finetune import STATE_DIR, FinetuneConfig, Finetuner, run_folder
from steerlab.train.pretrain import PretrainConfig, pretrain

TINY_SAC = '{"hidden": 32, "batch_size": 16}'


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny dataset, base checkpoint and finished finetune run (reach-v3, seconds)."""
    root = tmp_path_factory.mktemp("defects")
    ds = write_dataset(root / "ds", make_episodes(), "reach-v3", extra_info={"env": "metaworld", "max_steps": 20})
    base = pretrain(PretrainConfig(dataset=str(ds), out=str(root / "base"), steps=20, batch_size=16,
                                   policy=dict(TINY_POLICY)), progress=False)
    run = run_folder(_cfg(base, root / "run"), progress=False).out
    return {"ds": ds, "base": base, "run": run}


def _cfg(base, out, **kw):
    args = dict(base=str(base), method="zprl", env="reach-v3", env_steps=40, seed=0, out=str(out), max_steps=20,
                warmup_decisions=10, eval_every=40, eval_episodes=1, checkpoint_every=20, buffer_size=500,
                tensorboard=False, sac=SACConfig(hidden=32, batch_size=16), final_episodes=0, sampler_noise_scale=1.0)
    args.update(kw)
    return FinetuneConfig(**args)


def _ft_cli(base, out, *extra):
    return ["finetune", str(base), "--out", str(out), "--task", "reach-v3", "--env-steps", "40", "--max-steps", "20",
            "--warmup", "10", "--eval-every", "40", "--eval-episodes", "1", "--checkpoint-every", "20",
            "--buffer-size", "500", "--sac-json", TINY_SAC, "--no-tensorboard", "--sampler-noise-scale", "1", *extra]


def _fails(capsys, argv, *needles):
    """`steerlab argv` exits 2 with one line on stderr (no traceback) that contains every needle."""
    capsys.readouterr()
    assert main(argv) == 2
    return _one_line_error(capsys, *needles)


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


# ---------------------------------------------------------------------------------------------- 1. collect
def test_collect_refuses_foreign_folder(tmp_path, capsys):
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "thesis.txt").write_text("important")
    _fails(capsys, ["collect", "--task", "reach-v3", "--episodes", "1", "--quality", "expert", "--max-steps", "5",
                    "--out", str(victim)], "--overwrite")
    assert (victim / "thesis.txt").read_text() == "important" and (victim / "sub").is_dir()


def test_collect_overwrite_moves_the_old_folder_aside(tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.txt").write_text("important")
    assert main(["collect", "--task", "reach-v3", "--episodes", "1", "--quality", "expert", "--max-steps", "5",
                 "--out", str(victim), "--overwrite"]) == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("victim.replaced-")]
    assert len(aside) == 1 and (aside[0] / "thesis.txt").read_text() == "important"
    assert (victim / "meta" / "info.json").is_file() and (victim / "data").is_dir()
    # a second collect into the finished dataset is refused too (the last one no longer silently wins)
    assert main(["collect", "--task", "reach-v3", "--episodes", "1", "--max-steps", "5", "--out", str(victim)]) == 2


def test_collect_file_as_out_is_one_line_error(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("keep")
    _fails(capsys, ["collect", "--task", "reach-v3", "--episodes", "1", "--max-steps", "5", "--out", str(f)],
           "existing file")
    assert f.read_text() == "keep"


@pytest.mark.parametrize("flag", ["--episodes", "--max-steps"])
def test_collect_counts_must_be_positive(tmp_path, capsys, flag):
    args = {"--episodes": "1", "--max-steps": "5", flag: "0"}
    _fails(capsys, ["collect", "--task", "reach-v3", "--out", str(tmp_path / "d"),
                 *[x for kv in args.items() for x in kv]], flag)
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------------------------------------- 2. own inputs
def test_finetune_refuses_its_own_base_as_out(world, capsys):
    before = (world["base"] / "config.json").read_bytes()
    _fails(capsys, _ft_cli(world["base"], world["base"]), "input")
    assert (world["base"] / "config.json").read_bytes() == before


def test_pretrain_refuses_existing_checkpoint_and_its_inputs(world, tmp_path, capsys):
    ck = tmp_path / "ck"
    args = ["pretrain", "--dataset", str(world["ds"]), "--steps", "2", "--batch-size", "8",
            "--policy-json", json.dumps(TINY_POLICY)]
    assert main([*args, "--out", str(ck)]) == 0
    weights = (ck / "model.safetensors").read_bytes()
    _fails(capsys, [*args, "--out", str(ck), "--seed", "1"], "--overwrite")
    assert (ck / "model.safetensors").read_bytes() == weights
    _fails(capsys, [*args, "--out", str(world["ds"] / "ck")], "input")  # never inside its dataset
    assert main([*args, "--out", str(ck), "--seed", "1", "--overwrite"]) == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("ck.replaced-")]
    assert len(aside) == 1 and (aside[0] / "model.safetensors").read_bytes() == weights


# ---------------------------------------------------------------------------------------------- 3. snapshots
def test_mixed_snapshot_is_refused(world, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    # a replay buffer of another snapshot in place of this one's: the parts' steps and digests disagree
    other = tmp_path / "other"
    t = Finetuner(_cfg(world["base"], other, env_steps=20), progress=False)
    t.run()
    shutil.copy(other / STATE_DIR / "replay.npz", run / STATE_DIR / "replay.npz")
    with pytest.raises(CheckpointError, match="manifest"):
        Finetuner(_cfg(world["base"], run, env_steps=60), progress=False).load_state()
    _fails(capsys, _ft_cli(world["base"], run, "--env-steps", "60"), "refusing to resume")
    # the digests alone would not catch a copied manifest; the step recorded in every part does
    shutil.copy(other / STATE_DIR / "manifest.json", run / STATE_DIR / "manifest.json")
    manifest = json.loads((run / STATE_DIR / "manifest.json").read_text())
    from steerlab.train.finetune import file_digest

    manifest["files"] = {k: file_digest(run / STATE_DIR / k) for k in manifest["files"]}
    (run / STATE_DIR / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="different steps"):
        Finetuner(_cfg(world["base"], run, env_steps=60), progress=False).load_state()


def test_snapshot_without_manifest_is_refused(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    (run / STATE_DIR / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="not a complete snapshot"):
        Finetuner(_cfg(world["base"], run, env_steps=60), progress=False).load_state()


def test_crash_mid_switch_recovers_the_previous_snapshot(tmp_path):
    final = tmp_path / "state"
    with atomic_dir(final) as d:
        (d / "a").write_text("1")
    os.replace(final, final.with_name("state.old"))  # what a kill between the two renames leaves
    assert recover_dir(final) == final and (final / "a").read_text() == "1"
    assert not final.with_name("state.old").exists()


# ---------------------------------------------------------------------------------------------- 4./5. CLI, locks
@pytest.mark.parametrize("flag,value", [("--env-steps", "0"), ("--env-steps", "-5"), ("--eval-every", "0"),
                                        ("--checkpoint-every", "0"), ("--eval-episodes", "0"), ("--warmup", "-1")])
def test_finetune_counts_must_be_positive(world, tmp_path, capsys, flag, value):
    _fails(capsys, _ft_cli(world["base"], tmp_path / "r", flag, value), flag)
    assert not (tmp_path / "r").exists()


def test_two_writers_of_one_run_folder_are_refused(world, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    with FolderLock(run):  # another live process holds the run
        _fails(capsys, _ft_cli(world["base"], run, "--env-steps", "60"), "in use", f"pid {os.getpid()}")
        with pytest.raises(LockedError):
            FolderLock(run).acquire()
    # the lock of a dead process (its file left behind) is taken over: flock dies with its holder
    (run / ".lock").write_text(json.dumps({"pid": 999999, "host": "gone"}))
    with FolderLock(run):
        pass


def test_resume_with_changed_arguments_is_refused(world, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    _fails(capsys, _ft_cli(world["base"], run, "--reward", "sparse", "--seed", "1"), "reward", "seed")
    assert json.loads((run / "config.json").read_text())["finetune"]["reward"] == "dense"
    _fails(capsys, _ft_cli(world["base"], run, "--sac-json", '{"hidden": 32, "batch_size": 16, "utd": 2}'), "sac.utd")
    # a longer budget is allowed and recorded
    assert main(_ft_cli(world["base"], run, "--env-steps", "60")) == 0
    assert json.loads((run / "config.json").read_text())["finetune"]["env_steps"] == 60
    assert [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [0, 40, 60]


def test_no_resume_refuses_an_existing_run(world, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    _fails(capsys, _ft_cli(world["base"], run, "--no-resume"), "--overwrite")


# ---------------------------------------------------------------------------------------------- 6. silent results
def test_nan_weights_are_refused_at_load(world, tmp_path, capsys):
    ck = tmp_path / "ck"
    shutil.copytree(world["base"], ck)
    tensors = load_file(str(ck / "model.safetensors"))
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(ck / "model.safetensors"))
    _fails(capsys, ["evaluate", str(ck), "--episodes", "1", "--n-envs", "1", "--max-steps", "5"], "NaN")


def test_pretrain_steps_must_be_positive(world, tmp_path, capsys):
    for steps in ("0", "-5"):
        _fails(capsys, ["pretrain", "--dataset", str(world["ds"]), "--out", str(tmp_path / "ck"), "--steps", steps], "--steps")
    assert not (tmp_path / "ck").exists()
    with pytest.raises(UserError, match="steps"):
        pretrain(PretrainConfig(dataset=str(world["ds"]), out=str(tmp_path / "ck"), steps=0), progress=False)


@pytest.mark.parametrize("flag", ["--max-steps", "--episodes", "--n-envs"])
def test_evaluate_counts_must_be_positive(world, capsys, flag):
    args = {"--episodes": "1", "--n-envs": "1", "--max-steps": "5", flag: "0"}
    _fails(capsys, ["evaluate", str(world["base"]), *[x for kv in args.items() for x in kv]], flag)


def test_select_action_validates_every_call(world):
    policy = load_policy(world["base"])
    obs = np.zeros(39, np.float32)
    bad = {"NaN": np.full(39, np.nan, np.float32), "shape": np.zeros(38, np.float32),
           "real numbers": np.array(["x"] * 39), "batch of 3": np.zeros((3, 39), np.float32)}
    for what, x in bad.items():
        policy.reset()
        policy.select_action(obs)  # a chunk is queued: the next call would not re-plan
        with pytest.raises(UserError, match=what):
            policy.select_action(x)
    with pytest.raises(UserError, match="real numbers"):
        policy.predict_chunk([["a"] * 39])


def test_nan_inside_the_policy_is_an_error_not_an_action(world):
    policy = load_policy(world["base"])
    obs = np.zeros((1, 39), np.float32)
    with pytest.raises(UserError, match="noise"):
        policy.predict_chunk(obs, noise=torch.full((1, 8, 4), float("nan")))
    with pytest.raises(UserError, match="noise must have shape"):
        policy.predict_chunk(obs, noise=torch.zeros(1, 3))
    with pytest.raises(UserError, match="latent_residual"):
        policy.predict_chunk(obs, latent_residual=torch.full((1, 4), float("nan")))
    with pytest.raises(UserError, match="NaN or inf"):
        policy.select_action(np.full(39, 1e30, np.float32))
    policy.reset()
    assert np.isfinite(policy.select_action(obs[0])).all()


# ---------------------------------------------------------------------------------------------- 7. results
def test_evaluate_results_are_never_overwritten(world, tmp_path, capsys):
    ck = tmp_path / "ck"
    shutil.copytree(world["base"], ck)
    common = ["evaluate", str(ck), "--episodes", "1", "--n-envs", "1", "--max-steps", "5"]
    assert main(common) == 0 and main([*common, "--noise-scale", "0"]) == 0
    files = sorted(p.name for p in (tmp_path / "ck.evals").iterdir())
    assert files == ["eval_reach-v3_seed0_ep1_noise0_max5.json", "eval_reach-v3_seed0_ep1_noise1_max5.json"]
    assert not list(ck.glob("eval_*"))  # nothing written into the checkpoint (the command's input)
    _fails(capsys, common, "--overwrite")
    assert main([*common, "--overwrite"]) == 0
    assert len(list((tmp_path / "ck.evals").iterdir())) == 3  # the old result renamed aside
    _fails(capsys, [*common, "--out", str(ck / "x.json")], "input")


def test_evaluate_accepts_a_finetune_run_folder(world, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["evaluate", str(world["run"]), "--episodes", "1", "--n-envs", "1", "--max-steps", "5",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["checkpoint"].endswith("policy")


# ---------------------------------------------------------------------------------------------- 8. one-line errors
def test_unknown_sac_json_key_lists_valid_keys(world, tmp_path, capsys):
    _fails(capsys, _ft_cli(world["base"], tmp_path / "r", "--sac-json", '{"hiden": 32}'), "hiden", "valid keys", "hidden")
    _fails(capsys, _ft_cli(world["base"], tmp_path / "r", "--steering-json", '{"scale": 1}'), "scale", "latent_scale")
    _fails(capsys, _ft_cli(world["base"], tmp_path / "r", "--sac-json", "[1]"), "JSON object")


def test_string_hidden_in_checkpoint_config_is_one_line(world, tmp_path, capsys):
    ck = tmp_path / "ck"
    shutil.copytree(world["base"], ck)
    meta = json.loads((ck / "config.json").read_text())
    meta["config"]["hidden"] = "256"
    (ck / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="hidden"):
        load_policy(ck)
    _fails(capsys, ["evaluate", str(ck), "--episodes", "1", "--n-envs", "1"], "hidden", "'256'")


def test_finetuned_policy_as_base_is_refused(world, tmp_path, capsys):
    _fails(capsys, _ft_cli(world["run"] / "policy", tmp_path / "r"), "'steered'", "pass its base checkpoint")
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_out_is_one_line(world, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _fails(capsys, ["collect", "--task", "reach-v3", "--episodes", "1", "--max-steps", "5",
                     "--out", str(ro / "d")], "not writable")
    finally:
        ro.chmod(0o755)
