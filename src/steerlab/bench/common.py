"""Helpers shared by the benchmark scripts: resumable per-cell result files and markdown tables."""

from __future__ import annotations

import json
import os
from pathlib import Path


def bench_dir() -> Path:
    """The benchmarks folder results and run records live in: $STEERLAB_BENCH_DIR, else the `benchmarks/` folder
    of the repository holding the current directory (found upwards), else ./benchmarks."""
    if os.environ.get("STEERLAB_BENCH_DIR"):
        return Path(os.environ["STEERLAB_BENCH_DIR"]).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "benchmarks" / "results").is_dir():
            return folder / "benchmarks"
    return here / "benchmarks"


BENCH_DIR = bench_dir()
RESULTS = BENCH_DIR / "results"
RUNS = BENCH_DIR / "runs"


def load_cell(path: Path) -> dict | None:
    """A finished cell's JSON, or None when it is absent or unreadable (then it is recomputed)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def stderr(xs) -> float:
    """Standard error of the mean over seeds (sample std, ddof=1); 0 for a single seed."""
    import numpy as np

    xs = np.asarray(xs, float)
    return float(xs.std(ddof=1) / np.sqrt(len(xs))) if len(xs) > 1 else 0.0


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def steerlab_command(argv: list[str], quiet: bool = False, src: str | None = None) -> int:
    """Run `steerlab <argv>` in its own process, as a user runs it (the benchmarks sit below the CLI layer and do
    not import it); `src`: another steerlab source tree to run instead (first on PYTHONPATH). The exit code."""
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("steerlab")  # the installed console script, beside this Python
    if not exe.is_file():
        raise SystemExit(f"{exe} not found: install steerlab in this environment (make setup)")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(src).resolve()), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = subprocess.DEVNULL if quiet else None
    return subprocess.run([str(exe), *argv], env=env, stdout=out).returncode
