"""Is the quickstart's ZPRL gain reliable? The quickstart (steerlab.bench.quickstart, its defaults) for several
seeds, one at a time, into benchmarks/results/quickstart_seeds.json.

Per seed: the base's and the ZPRL-steered policy's success sampled and from ε = 0 with 95% Wilson intervals,
the difference with its verdict (beyond the 95% noise margin or not), the sealed rows, wall seconds per stage
and the machine's load average (the numbers were measured on a shared machine: the load says how shared).
Runs land in benchmarks/runs/quickstart_seeds/seed<k>/ (a finished seed is not rerun).

    steerlab bench quickstart_seeds             # seeds 0-4 at the quickstart's defaults (~4-8 min each on 2 cores;
                                                # the setting was chosen on 0-2, 3 and 4 are the held-out check)
    steerlab bench quickstart_seeds --quick     # the tiny budget, 2 seeds (seconds; the numbers mean nothing)
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import asdict

from steerlab.bench.common import RESULTS, RUNS, load_cell
from steerlab.bench.quickstart import QuickstartConfig, run
from steerlab.bench.quickstart_report import ROWS
from steerlab.bench.quickstart_report import table as run_table
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


def _mode(m: str) -> str:
    return {"eps0": "ε = 0", "sampled": "sampled"}.get(m, str(m))


def table(results: dict) -> str:
    """README's quickstart table: per seed, ZPRL against the base in the mode it trained in (the difference, its
    95% noise margin and the verdict), the other mode, the sealed rows on the user's goal, wall time and load."""
    from steerlab.bench.common import markdown_table

    rows = []
    for r in results["seeds"]:
        m = r["trained_mode"]
        other = "eps0" if m == "sampled" else "sampled"
        b, z, g = r["rows"]["base"], r["rows"]["zprl"], r["gain"]
        user = {k: r["rows"][k]["user_eps0"]["success"] for k in ("base", "right_key", "wrong_key", "no_key")}
        rows.append([str(r["seed"]), _mode(m), f"{b[m]['success']:.2f} → {z[m]['success']:.2f}",
                     f"{g[m]['diff']:+.2f} ± {g[m]['margin']:.2f} ({g[m]['verdict']})",
                     f"{b[other]['success']:.2f} → {z[other]['success']:.2f} ({g[other]['diff']:+.2f} ± "
                     f"{g[other]['margin']:.2f})",
                     f"{user['right_key']:.2f} / {user['wrong_key']:.2f} / {user['no_key']:.2f} "
                     f"(base {user['base']:.2f})",
                     f"{r['seconds']['total']:.0f}", f"{r['load_average']['start'][0]:.1f}–"
                                                    f"{r['load_average']['end'][0]:.1f}"])
    head = ["seed", "ZPRL trained at", "success: base → ZPRL", "ZPRL − base ± 95% margin", "other mode",
            "user's goal: right / wrong / no key", "wall s", "load"]
    c, v = results["config"], results["summary"]
    n = len(results["seeds"])
    return (markdown_table(head, rows) + f"\n\nZPRL above the base beyond the 95% noise margin in its trained mode on "
            f"{v['trained_mode']['improved']}/{n} seeds. {c['episodes']} {c['quality']} demos aimed {c['demo_offset']} m "
            f"beside the goal, {c['steps']} pretraining steps; ZPRL {c['env_steps']:,} env steps (latent bound "
            f"{c['latent_rms_ratio']} × RMS(z)); {c['eval_episodes']} episodes per cell, the same for every policy; "
            f"the user's goal (moved {c['goal_offset']} m) on {c['user_eval_episodes']}. Wall time of the whole run "
            f"(install excluded) on a {results['machine']['cpus']}-core machine shared with other jobs; load = its "
            f"1-minute load average at the start and the end.")


def ours(folder) -> bool:
    """Whether `folder` is an earlier run of this benchmark: its marker says so, or it holds only record files
    (what `steerlab bench` extracted from this benchmark's archive, which keeps them; records.KEEP)."""
    from steerlab.bench.records import KEEP

    if (read_marker(folder) or {}).get("kind") == "quickstart":
        return True
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return bool(files) and all(p.name in KEEP for p in files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench quickstart_seeds", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds to run (default: 0 1 2 3 4; --quick: 0 1)")
    ap.add_argument("--quick", action="store_true", help="the tiny budget (a smoke test of the benchmark)")
    args = ap.parse_args(argv)
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2, 3, 4])
    name = "quickstart_seeds_quick" if args.quick else "quickstart_seeds"
    records = []
    for seed in seeds:
        cfg = QuickstartConfig.tiny(seed=seed) if args.quick else QuickstartConfig(seed=seed)
        folder = RUNS / name / f"seed{seed}"
        done = load_cell(folder / "quickstart.json")
        if done is None or done.get("config") != asdict(cfg):
            if ours(folder):  # an unfinished or outdated run: redone
                shutil.rmtree(folder)
            with output_dir(folder, "quickstart") as (folder, _):
                done = run(cfg, folder, workers=1 if args.quick else 2)
            print("\n" + run_table(done) + "\n", flush=True)
        records.append(seed_record(done))
    result = {"config": asdict(QuickstartConfig.tiny() if args.quick else QuickstartConfig()), "seeds": records,
              "summary": verdicts(records), "machine": {"cpus": os.cpu_count()},
              "protocol": "steerlab quickstart at its defaults, one seed at a time (the quickstart itself runs "
                          "ZPRL and the personalization side by side, one process each)"}
    atomic_write_json(RESULTS / f"{name}.json", result)
    print(f"wrote {RESULTS / f'{name}.json'}")
    return 0
