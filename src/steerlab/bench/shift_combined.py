"""zprl-noise, latent + noise steering (issue 26, item 3), on the shift suite: its names, its own equal-budget sweep
(tuning.json "sweep_zprl_noise") and the sweep's table. `steerlab bench shift_rule` runs it (`--sweep-combined`,
`--methods zprl-noise zprl-noise-tuned`) beside ZPRL under the rule and counts issue 26's targets for it."""

from __future__ import annotations

from steerlab.bench.common import RUNS
from steerlab.bench.finetune_shift import (
    BENCHMARK_TASKS,
    Plan,
    label,
    make_cell,
    picked_settings,
    save_sweep,
    sweep_record,
    tuning_tasks,
)

COMBINED = "zprl-noise"
"""Latent + noise steering (issue 26, item 3), run beside ZPRL under the rule. Under this name its two parts take the grid's picks
of the methods they come from, ZPRL's λ (latent_rms_ratio) and DSRL's noise bound, everything else at the method's
defaults (its own sweep's pick runs as COMBINED_TUNED). It chooses ε itself, so the sampler-mode rule does not apply
(scale 1: the base's own noise in warm-up only)."""


COMBINED_SWEEP = [{"latent_rms_ratio": r, "noise_magnitude": m} for r in (0.1, 0.3, 1.0) for m in (1.5, 2.5)]
"""zprl-noise's own sweep, the grid's equal budget (six settings × the tuning tasks × seed 0, picked by the grid's
rule: highest mean AUC, ties to the earlier setting), fixed before any of its runs: ZPRL's λ over the span of ZPRL's
sweep (0.1 to 1.0) × DSRL's picked noise bound and the largest of DSRL's sweep. (0.3, 1.5) is the parts' picks, the
setting the zprl-noise grid runs use: its sweep run repeats the seed-0 grid run of each tuning task (same
configuration and seed), a determinism check the table shows."""
COMBINED_SWEEP_ROOT = RUNS / "finetune_shift_rule_sweep"
COMBINED_SWEEP_KEY = "sweep_zprl_noise"
COMBINED_TUNED = "zprl-noise-tuned"
"""The zprl-noise method at its own sweep's pick (tuning.json "sweep_zprl_noise"), run under its own name so the
parts' runs (`zprl-noise`) stay what they are. On the tuning tasks its seed-0 run repeats the sweep's run of the
picked setting (same configuration and seed), a second determinism check."""


def combined_sweep_plan() -> Plan:
    p = Plan(False)
    p.sweep, p.sweep_root, p.sweep_key = {COMBINED: COMBINED_SWEEP}, COMBINED_SWEEP_ROOT, COMBINED_SWEEP_KEY
    return p


def combined_sweep_cells(plan: Plan, tasks: list[str], bases: dict, shifts: dict) -> list[dict]:
    return [make_cell(plan, t, COMBINED, label(COMBINED, s), 0, shifts[t], bases[t], s, COMBINED_SWEEP_ROOT,
                      sampler_noise_scale=1.0) for s in COMBINED_SWEEP for t in tasks]


def record_combined_sweep(plan: Plan) -> dict:
    """tuning.json "sweep_zprl_noise" from the sweep runs recorded so far (a pick only once it is complete)."""
    sweep = combined_sweep_plan()
    rec = sweep_record(sweep, tuning_tasks(sorted(BENCHMARK_TASKS)))
    rec["parts_setting"] = combined_setting(picked_settings(plan.sweep_key, COMBINED_PARTS))
    save_sweep(sweep, rec)
    return rec


COMBINED_PARTS = ("zprl", "dsrl")


def combined_setting(settings: dict[str, dict]) -> dict:
    """zprl-noise's setting from its parts' picked settings ({method: setting})."""
    return {"latent_rms_ratio": settings["zprl"]["latent_rms_ratio"],
            "noise_magnitude": settings["dsrl"]["noise_magnitude"]}


def combined_sweep_text(sweep: dict, tasks: dict) -> str:
    """zprl-noise's own sweep: AUC per setting on each tuning task (seed 0), beside ZPRL (rule) and tuned DSRL at
    seed 0 on the same tasks, and the determinism check against the grid run with the same setting."""
    from steerlab.bench.common import markdown_table

    tt = sweep["tasks"]

    def seed0(task: str, key: str) -> str:
        r = tasks.get(task, {}).get(key)
        return f"{r['per_seed_auc'][0]:.2f}" if r and r.get("per_seed_auc") else "–"

    rows = [[name, *[f"{r['auc'][t]:.2f}" if t in r["auc"] else "–" for t in tt],
             f"{r['mean_auc']:.2f}" if r["complete"] else "–"] for name, r in sweep["runs"][COMBINED].items()]
    rows += [["zprl (rule), seed 0", *[seed0(t, "zprl_rule") for t in tt], ""],
             ["dsrl (grid), seed 0", *[seed0(t, "dsrl_grid") for t in tt], ""]]
    pick = sweep["picked"].get(COMBINED)
    parts = label(COMBINED, sweep["parts_setting"])
    ran = [t for t in tt if t in sweep["runs"][COMBINED].get(parts, {}).get("auc", {}) and tasks.get(t, {}).get(COMBINED)]
    same = [t for t in ran
            if abs(sweep["runs"][COMBINED][parts]["auc"][t] - tasks[t][COMBINED]["per_seed_auc"][0]) < 1e-4]
    own = pick["name"] if pick else None
    ran_own = [t for t in tt if own and t in sweep["runs"][COMBINED].get(own, {}).get("auc", {})
               and tasks.get(t, {}).get(COMBINED_TUNED)]
    same_own = [t for t in ran_own
                if abs(sweep["runs"][COMBINED][own]["auc"][t] - tasks[t][COMBINED_TUNED]["per_seed_auc"][0]) < 1e-4]
    return ("zprl-noise's own sweep (the grid's equal budget: six settings × the tuning tasks, seed 0; "
            f"{sweep['rule']}):\n\n" + markdown_table(["setting", *[f"AUC {t}" for t in tt], "mean AUC"], rows)
            + "\n\n" + (f"Picked: {pick['name']} (mean AUC {pick['mean_auc']:.2f})" if pick else
                         "Picked: none yet (the sweep is incomplete)")
            + (f"; the parts' picks {parts} reproduce the seed-0 grid run's AUC (to 1e-4) on {len(same)}/{len(ran)} "
               f"tuning tasks run so far." if ran else f"; the parts' picks {parts}: not run in the sweep yet.")
            + (f" The pick's sweep runs reproduce the seed-0 `zprl-noise-tuned` runs' AUC (to 1e-4) on "
               f"{len(same_own)}/{len(ran_own)} tuning tasks." if ran_own else ""))
