"""Fault injection for finetune runs: a forked child that SIGKILLs itself at a chosen moment.

`run_child(cfg, kill)` forks; the child wraps the writers (so the library carries no test hooks), runs
the finetune in its run folder and dies by SIGKILL at the chosen moment. `kill` is `none`, `time:<s>`
(the parent kills it after s seconds) or `<point>:<n>`: die the n-th (1-based) time the run reaches
  sac-mid   inside SAC.save, after sac.safetensors and before sac.json
  sac       after the snapshot's sac/ part
  replay    after the snapshot's replay.npz part
  loop      after the snapshot's loop.json, before its manifest
  switch    inside the folder switch: old snapshot renamed aside, new one not yet in place
  metrics   right after a metrics row is written (rows beyond the last snapshot)
  sigint    SIGINT (Ctrl-C) to itself right after a metrics row: the run must save and stop cleanly
  sigterm   the same with SIGTERM
Forking (not a fresh interpreter) keeps each try at the cost of the run itself, not of importing torch.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

POINTS = ("sac-mid", "sac", "replay", "loop", "switch", "metrics")


def _install(kill: str) -> None:
    import steerlab.core.io as core_io
    import steerlab.rl.sac as sac_mod
    import steerlab.train.finetune.snapshots as ft
    from steerlab.core.logger import RunLogger
    from steerlab.rl.replay import ReplayBuffer

    point, _, nth = kill.partition(":")
    count = {"n": 0}

    def hit(name: str) -> None:
        if name == point:
            count["n"] += 1
            if count["n"] == int(nth):
                sig = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM}.get(name, signal.SIGKILL)
                os.kill(os.getpid(), sig)

    def after(obj, attr, *names):
        original = getattr(obj, attr)

        def wrapped(*a, **k):
            out = original(*a, **k)
            for name in names:
                hit(name)
            return out

        setattr(obj, attr, wrapped)

    after(sac_mod.SAC, "save", "sac")
    after(ReplayBuffer, "save", "replay")
    after(RunLogger, "log", "metrics", "sigint", "sigterm")
    sac_write, ft_write = sac_mod.atomic_write_json, ft.atomic_write_json

    def sac_json(path, obj):
        hit("sac-mid")
        sac_write(path, obj)

    def ft_json(path, obj):
        ft_write(path, obj)
        if str(path).endswith("loop.json"):
            hit("loop")

    sac_mod.atomic_write_json, ft.atomic_write_json = sac_json, ft_json

    class _Os:
        """`os` as core.io sees it, with a kill between the two renames of a snapshot switch."""

        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def replace(src, dst):
            os.replace(src, dst)
            if str(dst).endswith(f"{ft.STATE_DIR}.old"):
                hit("switch")

    core_io.os = _Os()


def run_child(cfg: dict, kill: str = "none", cli: list[str] | None = None) -> tuple[int, str]:
    """Fork, run the finetune (`cfg`, or the CLI line `cli`) in the child; returns (status, child stdout).

    status: the exit code, or -signal if the child was killed.
    """
    log = tempfile.TemporaryFile()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child: its output goes to `log` (pytest's capture objects stay the parent's)
        code = 1
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            sys.stdout = sys.stderr = open(log.fileno(), "w", buffering=1, closefd=False)
            if not kill.startswith(("none", "time")):
                _install(kill)
            if cli is not None:
                from steerlab.cli import main

                code = main(cli)
            else:
                from steerlab.train.finetune import FinetuneConfig, run_folder

                run_folder(FinetuneConfig.from_dict(cfg), progress=False)
                code = 0
        except BaseException as err:  # noqa: BLE001 - reported to the parent through the exit code
            print(f"child error: {type(err).__name__}: {err}")
        finally:
            sys.stdout.flush()
            os._exit(code)
    status = None
    if kill.startswith("time:"):
        deadline = time.monotonic() + float(kill.split(":")[1])
        while time.monotonic() < deadline:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                break
            time.sleep(0.01)
        else:
            os.kill(pid, signal.SIGKILL)
    if status is None:
        status = os.waitpid(pid, 0)[1]
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    log.seek(0)
    text = log.read().decode(errors="replace")
    log.close()
    return code, text


def rows(run: Path) -> list[dict]:
    """metrics rows without the wall-clock column (the only one that may differ between runs)."""
    return [{k: v for k, v in json.loads(line).items() if k != "steps_per_s"}
            for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(a: Path, b: Path) -> None:
    """Same metrics rows (null == null) and bit-identical final policy weights."""
    ra, rb = rows(a), rows(b)
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    for x, y in zip(ra, rb):
        assert x.keys() == y.keys()
        for k in x:
            if k == "nulls":  # why a metric is null (strict JSON): the same reasons
                assert x[k] == y[k], (x["step"], x[k], y[k])
                continue
            assert np.array_equal(np.float64(x[k]), np.float64(y[k]), equal_nan=True), (x["step"], k, x[k], y[k])
    wa, wb = load_file(str(Path(a) / "policy" / "model.safetensors")), load_file(str(Path(b) / "policy" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert bool((wa[k] == wb[k]).all()), k
