"""The release gate on Meta-World pixel runs: how often does it keep a real gain, and what does it cost?

`steerlab finetune` ends with a release gate (train/finetune/gate.py): the steered policy and the base on 20
paired episodes of the 'gate' split; the base is released when the steered one scores below it. On Pendulum
(docs/results/reward_only.md) it removes small losses; its risk is the opposite error, dropping a real gain to the
noise of 20 episodes. This applies the library's own gate, at its default, to every finished run of the pixel
suite (`steerlab bench finetune_pixels`: 2 tasks × 3 methods + ZPRL on state × 2 seeds, trained without the gate),
and sets its decision beside what the run's final evaluation (30 other episodes per mode) measured against its
base. The decision is deterministic, so each run's record (gate.json in its folder) is computed once.

    steerlab bench release_gate [--shard I/N]       # -> benchmarks/results/release_gate.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from steerlab.bench.common import RESULTS, RUNS
from steerlab.core.io import atomic_write_json, read_json

SUITE = RUNS / "finetune_pixels"


def runs(root: Path = SUITE) -> list[Path]:
    """Finished runs of the suite (a result.json and a saved policy)."""
    return sorted(p.parent for p in root.glob("*__seed*/result.json") if (p.parent / "policy" / "config.json").is_file())


def base_final(run: Path, result: dict) -> dict:
    """The run's base on the suite's final episodes, both modes (base__<task>/result.json, or result_state.json
    for the ZPRL-on-state row)."""
    name = "result_state.json" if run.name.split("__")[1] == "zprl-state" else "result.json"
    return read_json(run.parent / f"base__{result['task']}" / name)


def gate_run(run: Path, episodes: int) -> dict:
    from steerlab.core.checkpoint import load_policy
    from steerlab.envs.registry import EnvSpec
    from steerlab.train.finetune.gate import release_gate

    cache = run / "gate.json"
    if cache.is_file():
        rec = read_json(cache)
        if rec.get("episodes") == episodes:
            return rec
    result = read_json(run / "result.json")
    policy = load_policy(run / "policy")
    t0 = time.perf_counter()
    gate = release_gate(policy, EnvSpec.from_dict(result["env"]), episodes, result["seed"])
    mode = result.get("final_trained_mode") or "sampled"
    base = base_final(run, result)
    rec = {**gate, "seconds": time.perf_counter() - t0, "run": run.name, "trained_mode": mode,
           "final_trained": result[f"final_{mode}"], "base_final_same_mode": base[f"final_{mode}"],
           "final_gain": result[f"final_{mode}"] - base[f"final_{mode}"], "final_episodes": result["final_episodes"]}
    atomic_write_json(cache, rec)
    return rec


def main(argv: list[str] | None = None) -> int:
    from steerlab.train.finetune.config import FIELD_DEFAULTS

    ap = argparse.ArgumentParser(prog="steerlab bench release_gate", description=__doc__.splitlines()[0])
    ap.add_argument("--shard", default="0/1", help="I/N: this process gates runs I, I+N, ... (run N processes)")
    ap.add_argument("--out", default=str(RESULTS / "release_gate.json"))
    args = ap.parse_args(argv)
    i, n = (int(v) for v in args.shard.split("/"))
    torch.set_num_threads(1)
    episodes = FIELD_DEFAULTS["release_gate_episodes"]
    todo = runs()
    for k, run in enumerate(todo):
        if k % n == i:
            r = gate_run(run, episodes)
            print(f"[{k + 1}/{len(todo)}] {run.name}: gate {r['success']['difference']:+.2f} -> releases the "
                  f"{r['released']}; final gain over the base {r['final_gain']:+.2f} ({r['seconds']:.0f} s)", flush=True)
    done = [read_json(r / "gate.json") for r in todo if (r / "gate.json").is_file()]
    gains = [r for r in done if r["final_gain"] > 0]
    atomic_write_json(Path(args.out), {
        "what": "the release gate at its default applied to each finished pixel-suite run (trained without it); "
                "final_gain: the run's final success in its trained mode minus its base's, on the suite's final "
                "episodes (other seeds than the gate's)",
        "gate_episodes": episodes, "runs_done": len(done), "runs": len(todo),
        "kept": sum(r["released"] == "steered" for r in done),
        "runs_with_final_gain": len(gains), "kept_of_those": sum(r["released"] == "steered" for r in gains),
        "runs_without_final_gain": len(done) - len(gains),
        "reverted_of_those": sum(r["released"] == "base" for r in done if r["final_gain"] <= 0),
        "mean_seconds": sum(r["seconds"] for r in done) / max(len(done), 1), "cells": done})
    print(f"-> {args.out}")
    return 0


def table(results: dict) -> str:
    """One row per run: the gate's paired difference and decision beside the run's final gain over its base."""
    from steerlab.bench.common import markdown_table

    rows = []
    for r in results["cells"]:
        g = r["success"]
        ci = g["difference_ci95"] or [float("nan")] * 2
        rows.append([r["run"].replace("__", " "), f"{g['steered']:.2f} vs {g['base']:.2f}",
                     f"{g['difference']:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}]", r["decided_by"], r["released"],
                     f"{r['final_trained']:.2f} vs {r['base_final_same_mode']:.2f} ({r['trained_mode']})",
                     f"{r['final_gain']:+.2f}"])
    head = markdown_table(["run", f"gate: steered vs base ({results['gate_episodes']} ep.)", "difference [95%]",
                           "decided by", "released", "final: trained vs base (mode)", "final gain"], rows)
    return (f"{head}\n\n{results['runs_done']}/{results['runs']} runs. The gate kept the steered policy in "
            f"{results['kept_of_those']} of the {results['runs_with_final_gain']} runs whose final evaluation "
            f"measured a gain over the base, and released the base in {results['reverted_of_those']} of the "
            f"{results['runs_without_final_gain']} without one; {results['mean_seconds']:.0f} s per gate "
            f"(2 × {results['gate_episodes']} pixel episodes) on this machine.")


if __name__ == "__main__":
    raise SystemExit(main())
