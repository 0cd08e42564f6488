"""Is the quickstart's ZPRL gain reliable? The quickstart (steerlab.bench.quickstart, its defaults) for several
seeds, one at a time, into benchmarks/results/quickstart_seeds.json.

Per seed: the base's and the ZPRL-steered policy's success sampled and from ε = 0 with 95% Wilson intervals,
the difference with its verdict (beyond the 95% noise margin or not), the sealed rows, wall seconds per stage
and the machine's load average (the numbers were measured on a shared machine: the load says how shared).
Runs land in benchmarks/runs/quickstart_seeds/seed<k>/ (a finished seed is not rerun).

    steerlab bench quickstart_seeds             # seeds 0 1 2 at the quickstart's defaults (~8 min each on 2 cores)
    steerlab bench quickstart_seeds --quick     # the tiny budget, 2 seeds (seconds; the numbers mean nothing)
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import asdict

from steerlab.bench.common import RESULTS, RUNS, load_cell
from steerlab.bench.quickstart import QuickstartConfig, run
from steerlab.bench.quickstart_report import ROWS, table
from steerlab.core.io import atomic_write_json
from steerlab.core.outdir import output_dir, read_marker


def seed_record(summary: dict) -> dict:
    """What the results file keeps of one quickstart run."""
    rows = summary["rows"]
    return {"seed": summary["config"]["seed"],
            "rows": {name: {m: rows[name][m] for m in ("sampled", "eps0", "user_eps0") if m in rows[name]}
                     for name in ROWS},
            "opened": {name: rows[name]["opened"] for name in ROWS if "opened" in rows[name]},
            "gain": summary["gain"], "trained_mode": summary["trained_mode"], "sampler_mode": summary["sampler_mode"],
            "curve": summary["curve"], "seconds": summary["seconds"], "load_average": summary["load_average"],
            "cpus": summary["cpus"]}


def verdicts(records: list[dict]) -> dict:
    """Per mode: on how many seeds ZPRL beat the base beyond noise, and the mean difference."""
    out = {}
    for mode in ("sampled", "eps0"):
        diffs = [r["gain"][mode]["diff"] for r in records]
        out[mode] = {"improved": sum(r["gain"][mode]["verdict"] == "improved" for r in records),
                     "above_base": sum(d > 0 for d in diffs), "seeds": len(records),
                     "mean_diff": sum(diffs) / len(diffs) if diffs else None}
    trained = [r["trained_mode"] for r in records]
    out["trained_mode"] = {"improved": sum(r["gain"][r["trained_mode"]]["verdict"] == "improved"
                                           for r in records if r["trained_mode"] in ("sampled", "eps0")),
                           "modes": trained}
    out["sealed"] = {"right_key_opened": sum(r["opened"].get("right_key", False) for r in records),
                     "wrong_or_no_key_opened": sum(r["opened"].get("wrong_key", False) or
                                                   r["opened"].get("no_key", False) for r in records)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench quickstart_seeds", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds to run (default: 0 1 2; --quick: 0 1)")
    ap.add_argument("--quick", action="store_true", help="the tiny budget (a smoke test of the benchmark)")
    args = ap.parse_args(argv)
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2])
    name = "quickstart_seeds_quick" if args.quick else "quickstart_seeds"
    records = []
    for seed in seeds:
        cfg = QuickstartConfig.tiny(seed=seed) if args.quick else QuickstartConfig(seed=seed)
        folder = RUNS / name / f"seed{seed}"
        done = load_cell(folder / "quickstart.json")
        if done is None or done.get("config") != asdict(cfg):
            if (read_marker(folder) or {}).get("kind") == "quickstart":  # an unfinished or outdated run: redone
                shutil.rmtree(folder)
            with output_dir(folder, "quickstart") as (folder, _):
                done = run(cfg, folder, workers=1 if args.quick else 2)
            print("\n" + table(done) + "\n", flush=True)
        records.append(seed_record(done))
    result = {"config": asdict(QuickstartConfig.tiny() if args.quick else QuickstartConfig()), "seeds": records,
              "summary": verdicts(records), "machine": {"cpus": os.cpu_count()},
              "protocol": "steerlab quickstart at its defaults, one seed at a time (the quickstart itself runs "
                          "ZPRL and the personalization side by side, one process each)"}
    atomic_write_json(RESULTS / f"{name}.json", result)
    print(f"wrote {RESULTS / f'{name}.json'}")
    return 0
