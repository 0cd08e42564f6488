"""The sampler-mode rule for the shift suite (issue 26), fixed from base-only evaluations before any RL run.

Every method that keeps the frozen sampler (zprl, action-residual, embedding-residual) trains and deploys at
ε = 0 on a task when the task's base from ε = 0 is at least as good as sampled, else sampled: the one rule of
`steerlab finetune --sampler-noise-scale auto` (steerlab.train.finetune.mode.choose_sampler_mode), applied here to
the calibration's evaluations of each task's base under its deployment shift (tuning.json "shift_calibration",
50 episodes each way, seed 0). Methods that choose ε themselves (dsrl, dsrl-na, zprl-noise) keep scale 1.

    steerlab bench sampler_rule      # writes tuning.json "sampler_mode_rule" and prints it
"""

from __future__ import annotations

import sys

from steerlab.bench.common import load_cell
from steerlab.bench.shift_calibrate import TUNING
from steerlab.core.io import atomic_write_json
from steerlab.train.finetune.mode import choose_sampler_mode

RULE = ("train and deploy at ε = 0 when the base's ε = 0 success is at least as good as its sampled success on the "
        "calibration's evaluation episodes (under the task's deployment shift), else sampled; mean return decides "
        "where neither mode succeeded; applies to the methods that keep the frozen sampler")
KEEPS_SAMPLER = ("zprl", "action-residual", "embedding-residual")


def rule_record(calibration: dict) -> dict:
    """tuning.json "sampler_mode_rule": per task the numbers the rule used and the scale it chose."""
    tasks = {}
    for task, c in sorted(calibration["chosen"].items()):
        eps0, sampled = {"success": c["eps0"]}, {"success": c["sampled"]}
        tasks[task] = {"shift": c["shift"], "eps0": c["eps0"], "sampled": c["sampled"],
                       "chosen": choose_sampler_mode(eps0, sampled)}
    return {"rule": RULE, "methods": list(KEEPS_SAMPLER), "source": "shift_calibration",
            "episodes": calibration["episodes"], "seed": 0, "tasks": tasks}


def grid_modes(tasks: list[str], quick: bool, base_results: dict[str, dict] | None = None) -> dict[str, float]:
    """The scale per task for the methods that keep the sampler: tuning.json's rule (written from the calibration
    if missing); --quick (no calibration of its mild shifts): the rule on the quick base rows' final evaluations."""
    if quick:
        return {t: choose_sampler_mode({"success": r["final_eps0"]}, {"success": r["final_sampled"]})
                for t, r in (base_results or {}).items() if t in tasks}
    tuning = load_cell(TUNING) or {}
    rec = tuning.get("sampler_mode_rule") or write_rule()
    missing = [t for t in tasks if t not in rec["tasks"]]
    if missing:
        raise SystemExit(f"no sampler-mode decision for {', '.join(missing)}: run benchmarks/shift_calibrate.py, "
                         f"then steerlab bench sampler_rule")
    return {t: rec["tasks"][t]["chosen"] for t in tasks}


def write_rule() -> dict:
    tuning = load_cell(TUNING) or {}
    if "shift_calibration" not in tuning:
        raise SystemExit("tuning.json has no shift_calibration: run benchmarks/shift_calibrate.py first")
    rec = rule_record(tuning["shift_calibration"])
    tuning["sampler_mode_rule"] = rec
    atomic_write_json(TUNING, tuning)
    return rec


def main(argv: list[str] | None = None) -> int:
    rec = write_rule()
    for task, t in rec["tasks"].items():
        mode = "ε = 0" if t["chosen"] == 0.0 else "sampled"
        print(f"{task:20s} {t['shift']:26s} ε = 0 {t['eps0']:.2f}  sampled {t['sampled']:.2f}  -> {mode}")
    print(f"-> {TUNING} \"sampler_mode_rule\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
