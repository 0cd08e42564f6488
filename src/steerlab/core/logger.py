"""Run folder logging: `metrics.jsonl` (what `bench` reads) and optional TensorBoard scalars.

A resumed run continues from a training-state snapshot taken at some step S. Rows the killed run logged
after S would be logged again, so `resume_at=S` first drops them (the file is rewritten atomically) and
rebuilds `tb/` from the rows that remain. TensorBoard is derived data: rebuilding it from metrics.jsonl
(into a fresh folder switched in with one rename) leaves no stale or duplicate event file, and the
continuation then appends one new event file beside the rebuilt one.

Rows are strict JSON (core/io.py `strict_json`): a metric that is not a finite number (not measured, e.g. the
success of an env that reports none, or the jerk of an env without an end-effector position) is written as
null, and the row's `"nulls"` map says why; TensorBoard gets no point for it. `read_metrics` hands such a
null back as NaN, so numeric code can keep using `np.isfinite`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from steerlab.core.io import NULLS, atomic_dir, dumps_strict, fsync_dir, recover_dir


def _summary_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional at run time
        return None
    return SummaryWriter(str(folder))


def _parse_rows(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a kill: it was logged after any snapshot anyway
            break
    return rows


def truncate_metrics(path: str | Path, last_step: int | None) -> list[dict]:
    """Keep the rows with step <= last_step (none if None); rewrite `path` atomically. Returns them."""
    path = Path(path)
    rows = [] if last_step is None or not path.is_file() else [r for r in _parse_rows(path) if r["step"] <= last_step]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o644)
    try:
        with os.fdopen(fd, "w") as f:
            f.writelines(dumps_strict(r) + "\n" for r in rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rows


class RunLogger:
    def __init__(self, run_dir: str | Path, tensorboard: bool = True, append: bool = False,
                 resume_at: int | None = None):
        """`append=True, resume_at=S`: continue a run from its snapshot at step S (rows after S dropped)."""
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        kept: list[dict] = []
        if append:
            kept = truncate_metrics(self.dir / "metrics.jsonl", resume_at)
        self._f = open(self.dir / "metrics.jsonl", "a" if append else "w")
        self._tb = None
        if tensorboard:
            tb = self.dir / "tb"
            recover_dir(tb)
            if append or tb.exists():
                with atomic_dir(tb, replace=True) as tmp:  # this run's own TensorBoard folder, rebuilt
                    writer = _summary_writer(tmp)
                    if writer is not None:
                        for row in kept:
                            self._tb_row(writer, row)
                        writer.close()
            self._tb = _summary_writer(tb)

    @staticmethod
    def _tb_row(writer, row: dict) -> None:
        for k, v in row.items():
            if k != "step" and isinstance(v, int | float) and v == v:  # no point for a null / NaN metric
                writer.add_scalar(k, float(v), int(row["step"]))

    def log(self, step: int, nulls: dict[str, str] | None = None, **metrics: float | None) -> None:
        """One row; `nulls`: {metric: why it is not measured} for metrics passed as None or NaN."""
        row = {"step": int(step), **{k: None if v is None else float(v) for k, v in metrics.items()}}
        if nulls:
            row[NULLS] = {k: why for k, why in nulls.items() if k in row}
        row = json.loads(dumps_strict(row))
        self._f.write(json.dumps(row, allow_nan=False) + "\n")
        self._f.flush()
        if self._tb is not None:
            self._tb_row(self._tb, row)

    def close(self) -> None:
        self._f.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:  # null (not measured) -> NaN for numeric readers; the row's "nulls" map keeps the reason
        for k, v in row.items():
            if v is None:
                row[k] = float("nan")
    return rows
