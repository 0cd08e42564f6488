"""Grids of independent runs (method × task × seed) on Ray, resumable by construction.

`ray.init()` starts a local cluster by default (one CPU per run); pass `address` to join an existing
cluster. Each cell is a plain dict handed to a top-level function; cells whose `is_done(cell)` is
already true are skipped, so re-running an interrupted sweep picks up where it stopped. Without Ray
(`use_ray=False`) cells run one after another in this process.

Shipping (`ship=Shipping(...)`): on a cluster without a shared filesystem a worker can neither read the
driver's files nor leave its own where the driver looks. With `ship`, a sweep behaves the same on a
laptop and a cluster:

* every input folder a cell names (e.g. the base checkpoint) is read once on the driver and put in
  Ray's object store; the worker writes it into its own temporary directory and the cell's paths are
  rewritten to point there;
* the worker runs the cell inside that temporary directory (its working directory too), with the run
  folder redirected into it, then returns the run's small artifacts (files matching `keep`, e.g.
  config.json, metrics.jsonl, result.json, policy/*) as bytes and deletes the directory;
* the driver writes the artifacts into the run folder the cell named, each file atomically and
  result-like files (`last`) after the rest, so a run counts as done only once all of it is on disk.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from steerlab.core.progress import progress_bar

NEVER_RETURNED = {".lock", ".claim"}
"""A worker's locks and claims mean nothing on the driver (an OS file lock does not travel anyway)."""
MAX_SHIPPED_BYTES = 512 * 2**20
"""Refuse to ship an input folder larger than this (a checkpoint is MBs; a dataset folder would not belong)."""


@dataclass(frozen=True)
class Shipping:
    inputs: tuple[str, ...] = ()
    """Cell keys whose values are local folders the run reads (shipped through the object store)."""
    output: str = "out"
    """Cell key of the run folder the run writes (redirected into the worker's temp dir, returned)."""
    keep: tuple[str, ...] = (".steerlab.json", "config.json", "metrics.jsonl", "result.json", "policy/*")
    """Glob patterns, relative to the run folder, of the artifacts returned to the driver (the folder's
    steerlab marker too, so the driver's copy is recognised as steerlab's own; locks never travel)."""
    last: tuple[str, ...] = ("result.json",)
    """Artifacts written last on the driver (the files a sweep's `is_done` looks at)."""


# ------------------------------------------------------------------ shipping (pure functions, testable)
def pack_folder(path: str | Path) -> dict[str, bytes]:
    """Every regular file under `path` as {relative posix path: bytes}."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"input folder to ship does not exist: {root}")
    files, total = {}, 0
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            total += len(data)
            if total > MAX_SHIPPED_BYTES:
                raise ValueError(f"{root} is larger than {MAX_SHIPPED_BYTES >> 20} MiB; ship checkpoints, not data sets")
            files[p.relative_to(root).as_posix()] = data
    return files


def unpack_folder(files: dict[str, bytes], dest: str | Path) -> Path:
    """Write {relative path: bytes} under `dest` (refusing paths that would leave it)."""
    dest = Path(dest)
    for rel, data in files.items():
        target = (dest / rel).resolve()
        if not target.is_relative_to(dest.resolve()):
            raise ValueError(f"refusing to write outside {dest}: {rel}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return dest


def collect_artifacts(run_dir: str | Path, keep: tuple[str, ...]) -> dict[str, bytes]:
    """The files under `run_dir` matching any of `keep` (relative glob patterns)."""
    root = Path(run_dir)
    out = {}
    if not root.is_dir():
        return out
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and p.name not in NEVER_RETURNED and any(fnmatch.fnmatch(rel, pat) for pat in keep):
            out[rel] = p.read_bytes()
    return out


def write_artifacts(artifacts: dict[str, bytes], run_dir: str | Path, last: tuple[str, ...] = ()) -> Path:
    """Write returned artifacts into `run_dir` (driver side): each file atomically, `last` ones last.
    Files already there and not returned are left alone."""
    root = Path(run_dir)
    order = sorted(artifacts, key=lambda rel: (rel in last, rel))
    for rel in order:
        target = (root / rel).resolve()
        if not target.is_relative_to(root.resolve()):
            raise ValueError(f"refusing to write outside {root}: {rel}")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.chmod(tmp, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(artifacts[rel])
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return root


def run_shipped(fn: Callable[[dict], dict], cell: dict, ship: Shipping, inputs: dict[str, dict[str, bytes]]) -> dict:
    """Worker side: materialize `inputs` in a fresh temp dir, run `fn` there on a rewritten cell, and
    return {"result": fn's dict, "artifacts": {relative path: bytes}}. Reads nothing of the driver's disk
    through the cell's paths and leaves nothing behind."""
    work = Path(tempfile.mkdtemp(prefix="steerlab-cell-"))
    cwd = os.getcwd()
    try:
        local = dict(cell, shipped_from={key: cell[key] for key in (*ship.inputs, ship.output)})
        for key in ship.inputs:
            local[key] = str(unpack_folder(inputs[key], work / "inputs" / key))
        run_dir = work / "run" / Path(cell[ship.output]).name
        local[ship.output] = str(run_dir)
        os.chdir(work)
        result = fn(local)
        return {"result": result, "artifacts": collect_artifacts(run_dir, ship.keep)}
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)


def _run_shipped_remote(fn, cell: dict, ship: Shipping, keys: tuple[str, ...], *blobs) -> dict:
    # Ray resolves object refs only when they are top-level arguments, hence the blobs as *args
    return run_shipped(fn, cell, ship, dict(zip(keys, blobs, strict=True)))


def finish_shipped(cell: dict, ship: Shipping, returned: dict) -> dict:
    """Driver side: write the returned artifacts where the cell said, return fn's result dict."""
    if returned["artifacts"]:
        write_artifacts(returned["artifacts"], cell[ship.output], ship.last)
    return returned["result"]


# ------------------------------------------------------------------ the grid
def run_grid(cells: list[dict], fn: Callable[[dict], dict], is_done: Callable[[dict], bool],
             use_ray: bool = True, address: str | None = None, num_cpus: int | None = None,
             desc: str = "sweep", ship: Shipping | None = None) -> list[dict]:
    todo = [c for c in cells if not is_done(c)]
    skipped = len(cells) - len(todo)
    results: list[dict] = []
    if not todo:
        print(f"{desc}: all {len(cells)} runs already recorded")
        return results
    print(f"{desc}: {len(todo)} runs to do, {skipped} already recorded")
    bar = progress_bar(total=len(todo), desc=desc, unit="run")
    t0 = time.perf_counter()
    if not use_ray:
        for cell in todo:
            results.append(fn(cell))
            bar.update(1)
        bar.close()
        return results

    import ray

    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                 log_to_driver=True, configure_logging=False)
    if ship is None:
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        pending = {remote.remote(cell): cell for cell in todo}
    else:
        remote = ray.remote(num_cpus=1, max_retries=0)(_run_shipped_remote)
        refs: dict[str, ray.ObjectRef] = {}  # one object per distinct input folder (bases are shared by many cells)
        for cell in todo:
            for key in ship.inputs:
                path = str(Path(cell[key]).resolve())
                if path not in refs:
                    refs[path] = ray.put(pack_folder(path))
        pending = {remote.remote(fn, cell, ship, ship.inputs, *[refs[str(Path(cell[k]).resolve())] for k in ship.inputs]):
                   cell for cell in todo}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            cell = pending.pop(ref)
            try:
                out = ray.get(ref)
                results.append(finish_shipped(cell, ship, out) if ship is not None else out)
            except Exception as err:  # one failed run must not sink the sweep; it is retried next time
                print(f"{desc}: run {cell} failed: {err}")
            bar.update(1)
            bar.set_postfix(elapsed=f"{(time.perf_counter() - t0) / 60:.1f} min")
    bar.close()
    return results
