"""Grids of independent runs (method × task × seed) on Ray, resumable by construction.

`ray.init()` starts a local cluster by default (one CPU per run); pass `address` to join an existing
cluster. Each cell is a plain dict handed to a top-level function that writes its own run folder;
cells whose `is_done(cell)` is already true are skipped, so re-running an interrupted sweep picks up
where it stopped. Without Ray (`use_ray=False`) cells run one after another in this process.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tqdm.auto import tqdm


def run_grid(cells: list[dict], fn: Callable[[dict], dict], is_done: Callable[[dict], bool],
             use_ray: bool = True, address: str | None = None, num_cpus: int | None = None,
             desc: str = "sweep") -> list[dict]:
    todo = [c for c in cells if not is_done(c)]
    skipped = len(cells) - len(todo)
    results: list[dict] = []
    if not todo:
        print(f"{desc}: all {len(cells)} runs already recorded")
        return results
    print(f"{desc}: {len(todo)} runs to do, {skipped} already recorded")
    bar = tqdm(total=len(todo), desc=desc, unit="run")
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
    remote = ray.remote(num_cpus=1, max_retries=0)(fn)
    pending = {remote.remote(cell): cell for cell in todo}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            cell = pending.pop(ref)
            try:
                results.append(ray.get(ref))
            except Exception as err:  # one failed run must not sink the sweep; it is retried next time
                print(f"{desc}: run {cell} failed: {err}")
            bar.update(1)
            bar.set_postfix(elapsed=f"{(time.perf_counter() - t0) / 60:.1f} min")
    bar.close()
    return results
