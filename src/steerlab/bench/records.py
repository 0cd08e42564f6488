"""Per-run records kept out of the code's tree: one compressed archive per record folder.

A benchmark writes each finished run's small files (config.json, metrics.jsonl, result.json; or one JSON per
cell) into a record folder — `benchmarks/runs/<benchmark>/` or `benchmarks/results/<name>_runs/` — which is not
tracked by git. What is tracked is `benchmarks/records/<folder>.tar.gz`, one archive per record folder:

* `unpack()` (before a benchmark runs, and for `--collect`) extracts every file of every archive that is not
  already on disk: a local file is never overwritten, so an interrupted sweep keeps its newer records.
* `pack()` (after a benchmark ran) rewrites each archive from its folder, deterministically (sorted names,
  zero times and owners, fixed modes, gzip without a timestamp): the same records give the same bytes, so an
  unchanged folder leaves git clean and a new run changes one archive.

Only the records' small text files are archived (checkpoints, replay buffers and logs never are).
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path, PurePosixPath

from steerlab.bench.common import BENCH_DIR
from steerlab.core.errors import UserError

RECORDS = BENCH_DIR / "records"
# record folders (relative to the benchmarks folder): every subfolder of runs/, and these per-cell folders
CELL_FOLDERS = ("results/privacy_runs", "results/pretrain_runs", "results/panda_runs")
KEEP = {"config.json", "metrics.jsonl", "result.json", "paired.json", "gate.json", "quickstart.json"}
"""File names a run folder under runs/ contributes (per-cell folders contribute every .json); paired.json is a
reward_only run's paired base-vs-steered evaluation, gate.json its release gate and the released policy's, quickstart.json the quickstart's whole summary
(steerlab.bench.quickstart_seeds reuses a recorded seed from it)."""


def archive_name(folder: str) -> str:
    return folder.replace("/", "__") + ".tar.gz"


CHECKPOINT_FOLDERS = ("runs/pretrain", "runs/pretrain_quick")
"""Folders of base checkpoints, not records: an archived config.json without its weights, unpacked on another
machine, would be a folder the benchmark did not write there, and building the missing base into it is refused."""


def record_folders(root: Path = BENCH_DIR) -> list[str]:
    runs = sorted(f"runs/{p.name}" for p in (root / "runs").iterdir()
                  if p.is_dir() and f"runs/{p.name}" not in CHECKPOINT_FOLDERS) if (root / "runs").is_dir() else []
    return runs + [f for f in CELL_FOLDERS if (root / f).is_dir()]


def _in_progress(path: Path, base: Path, state_dir: str) -> bool:
    """Whether `path` lies in a finetune run that has not finished: its resumable state (`state_dir`) exists, its
    result.json not yet. Packing its partial config and metrics would hand a later checkout a run folder it cannot
    resume (the state is never archived): the run is archived once it has finished."""
    for d in path.parents:
        if d == base:
            return False
        if (d / state_dir).is_dir() and not (d / "result.json").is_file():
            return True
    return False


def _members(root: Path, folder: str) -> list[Path]:
    base = root / folder
    if folder.startswith("runs/"):
        from steerlab.train.finetune.snapshots import STATE_DIR  # here: unpack alone never needs torch

        return sorted(p for p in base.rglob("*")
                      if p.is_file() and p.name in KEEP and not _in_progress(p, base, STATE_DIR))
    return sorted(p for p in base.rglob("*.json") if p.is_file())


def pack(root: Path = BENCH_DIR, records: Path | None = None) -> list[Path]:
    """Write one archive per record folder; returns the archives whose bytes changed."""
    records = records or root / "records"
    changed = []
    for folder in record_folders(root):
        files = _members(root, folder)
        if not files:
            continue
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in files:
                data = path.read_bytes()
                info = tarfile.TarInfo(path.relative_to(root / folder).as_posix())
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
        blob = gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)
        target = records / archive_name(folder)
        if target.is_file() and target.read_bytes() == blob:
            continue
        records.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(blob)
        tmp.replace(target)
        changed.append(target)
    return changed


def unpack(root: Path = BENCH_DIR, records: Path | None = None) -> int:
    """Extract the files of every archive that are not on disk yet; returns how many were written."""
    records = records or root / "records"
    written = 0
    for archive in sorted(records.glob("*.tar.gz")) if records.is_dir() else []:
        folder = root / archive.name.removesuffix(".tar.gz").replace("__", "/")
        with tarfile.open(archive, "r:gz") as tar:
            for info in tar.getmembers():
                name = PurePosixPath(info.name)
                if not info.isfile() or name.is_absolute() or ".." in name.parts:
                    raise UserError(f"{archive} holds an unsafe entry {info.name!r}; refusing to extract it")
                dest = folder / name
                if dest.exists():
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(tar.extractfile(info).read())
                written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="steerlab bench records", description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("pack", "unpack"))
    args = ap.parse_args(argv)
    if args.action == "pack":
        changed = pack()
        print(f"{len(changed)} archive(s) changed in {RECORDS}")
    else:
        print(f"{unpack()} record file(s) extracted from {RECORDS}")
    return 0
