"""Kill a small finetune at many moments (inside every part of a snapshot write too), resume, and check the
finished run equals an uninterrupted one bit for bit: metrics rows and final weights.

The fast test runs in the default suite; `make test-faults` runs the long one (marker `faults`).
"""

import random
import shlex
from pathlib import Path

import pytest
from faults import POINTS, assert_same_run, rows, run_child

from steerlab.rl.sac import SACConfig
from steerlab.train.finetune import STATE_DIR, FinetuneConfig, run_folder


def _cfg(base, out, env_steps=60, tensorboard=False, eval_every=60) -> FinetuneConfig:
    # a snapshot at every episode end (20 env steps); evaluations at 0 and every `eval_every` steps
    return FinetuneConfig(base=str(base), method="zprl", env="reach-v3", env_steps=env_steps, seed=0, out=str(out),
                          max_steps=20, warmup_decisions=10, eval_every=eval_every, eval_episodes=1,
                          checkpoint_every=20,
                          buffer_size=1000, tensorboard=tensorboard, sac=SACConfig(hidden=32, batch_size=16),
                          final_episodes=0, sampler_noise_scale=1.0)


@pytest.fixture(scope="module")
def reference(base_ckpt, tmp_path_factory):
    """The uninterrupted run every interrupted one must equal."""
    return run_folder(_cfg(base_ckpt, tmp_path_factory.mktemp("ref") / "run"), progress=False).out


def _kill_and_resume(cfg: FinetuneConfig, kills: list[str]) -> list[tuple[str, int]]:
    """Run `cfg` once per kill (each resuming the previous), then to the end; returns what each try did."""
    log = []
    for kill in kills:
        code, text = run_child(cfg.to_dict(), kill)
        assert code in (0, -9), f"{kill}: exit {code}\n{text}"
        log.append((kill, code))
    code, text = run_child(cfg.to_dict(), "none")
    assert code == 0, text
    return log


def test_finetune_killed_inside_each_snapshot_part_resumes_bit_exact(base_ckpt, reference, tmp_path):
    cfg = _cfg(base_ckpt, tmp_path / "killed")
    # snapshot 40 torn inside sac/; snapshot 40 torn mid-switch; the step-60 row logged, no snapshot yet;
    # the final snapshot (after the policy) torn after loop.json. Each try resumes the last complete snapshot.
    log = _kill_and_resume(cfg, ["sac-mid:2", "switch:1", "metrics:1", "loop:1"])
    assert all(code == -9 for _, code in log), log  # every kill landed
    assert_same_run(reference, cfg.out)
    leftovers = [p.name for p in Path(cfg.out).iterdir() if p.name.endswith((".tmp", ".old"))]
    assert not leftovers


@pytest.mark.parametrize("sig", ["sigint", "sigterm"])
def test_finetune_sigint_saves_and_prints_resume_command(base_ckpt, reference, tmp_path, sig):
    out = tmp_path / "run"
    cli = ["finetune", str(base_ckpt), "--out", str(out), "--task", "reach-v3", "--env-steps", "60", "--max-steps", "20",
           "--warmup", "10", "--eval-every", "60", "--eval-episodes", "1", "--checkpoint-every", "1000",
           "--buffer-size", "1000", "--sac-json", '{"hidden": 32, "batch_size": 16}']
    code, text = run_child({}, f"{sig}:1", cli=cli)  # Ctrl-C right after the step-0 evaluation row
    assert code == 0, text
    assert f"stopped by {sig.upper()} at env step 20" in text
    assert "Resume with:" in text and (out / STATE_DIR / "manifest.json").is_file()
    assert not (out / "policy").exists()  # stopped early: no final policy yet
    resume = shlex.split(text.split("Resume with:")[1].strip().splitlines()[0])
    assert resume[:2] == ["steerlab", "finetune"]
    code, text = run_child({}, "none", cli=resume[1:])
    assert code == 0, text
    assert_same_run(reference, out)
    # TensorBoard was rebuilt from the kept rows: one file of the first attempt, one of the continuation
    assert len(list((out / "tb").iterdir())) == 2


@pytest.mark.faults
def test_finetune_survives_many_random_kills(base_ckpt, tmp_path):
    """>= 20 SIGKILLs that land: inside every snapshot part (twice each) and at random moments (seeded).

    Each run folder is killed until a try finishes; then it must equal the uninterrupted run and the next
    kills go to a fresh folder, until the schedule is spent.
    """
    ref = run_folder(_cfg(base_ckpt, tmp_path / "ref", env_steps=160, eval_every=40), progress=False).out
    rng = random.Random(0)
    kills = [f"{p}:1" for p in POINTS for _ in range(2)]
    kills += [f"time:{rng.uniform(0.2, 3.0):.2f}" for _ in range(14)]
    rng.shuffle(kills)
    landed, finished = [], 0
    while kills:
        cfg = _cfg(base_ckpt, tmp_path / f"killed{finished}", env_steps=160, eval_every=40, tensorboard=True)
        while True:
            kill = kills.pop() if kills else "none"
            code, text = run_child(cfg.to_dict(), kill)
            assert code in (0, -9), f"{kill}: exit {code}\n{text}"
            if code == -9:
                landed.append(kill)
                continue
            break
        assert_same_run(ref, cfg.out)
        assert len(rows(cfg.out)) == len(rows(ref))
        finished += 1
    assert len(landed) >= 20, landed
    assert {k.split(":")[0] for k in landed} >= set(POINTS), landed
    print(f"{len(landed)} kills landed over {finished} runs: {landed}")
