"""The deployment-shift suite's declaration (methods, seeds, the tuning grid and its pick rule, the diagnosis) and
its report (targets, verdicts, tables) — what steerlab.bench.finetune_shift runs and how its results read."""

from __future__ import annotations

import numpy as np

from steerlab.bench import finetune as ft
from steerlab.bench.shift_calibrate import assign_families
from steerlab.bench.suite import HEADLINE_NOTE, headline_table
from steerlab.envs.metaworld_env import BENCHMARK_TASKS

METHODS = ft.METHODS
SEEDS = 3
N_ENVS = 8
"""Envs per run (the vectorized loop; steerlab.bench.vector_efficiency measured 8 against 1)."""

# The tuning grid, fixed before any run: six settings per method (mildest / the old default first).
# ZPRL: λ as a multiple of the RMS of the base latent (latent_rms_ratio). Action residual: its bound
# (env units) × the length of its progressive exploration. DSRL: the noise bound × the entropy target of
# its noise action, in nats per noise dimension (0: the DSRL paper's; −0.5: SAC's usual −dim/2).
SWEEP = {
    "zprl": [{"latent_rms_ratio": r} for r in (0.1, 0.2, 0.3, 0.5, 0.75, 1.0)],
    "action-residual": [{"residual_scale": s, "progressive_steps": p}
                        for s in (0.05, 0.15, 0.5) for p in (5_000, 20_000)],
    "dsrl": [{"noise_magnitude": m, "target_entropy_per_dim": e} for m in (1.0, 1.5, 2.5) for e in (0.0, -0.5)],
}
SAC_KNOBS = {"target_entropy_per_dim"}
"""Sweep keys that set the SAC rather than the steering method (translated in `overrides`)."""
# A diagnosis, never a tuning step (nothing in the grid depends on it): the tuned ZPRL with the frozen sampler
# integrated from ε = 0, in training and in the evaluations its curve is made of, on the tuning tasks, seed 0.
# DSRL's actor starts with zero mean noise, so its deterministic evaluations start at the base's ε = 0 mode,
# while ZPRL's and the action residual's evaluate the base's sampler: this run measures how much of an AUC
# gap that difference alone explains.
DIAGNOSIS = {"method": "zprl", "name": "zprl-eps0-sampler", "sampler_noise_scale": 0.0}
PICK_RULE = ("per method, the setting with the highest mean AUC over the tuning tasks (1 seed each); "
             "ties: the earlier setting in the grid")


def tuning_tasks(tasks: list[str]) -> list[str]:
    """The first task of each family in alphabetical order (fixed by the family assignment alone)."""
    fam = assign_families(BENCHMARK_TASKS)
    return [next(t for t in sorted(tasks) if fam[t] == f) for f in dict.fromkeys(fam[t] for t in sorted(tasks))]


def targets(results: dict) -> dict:
    """Issue 13's targets, counted over the tasks that have every row (`met` is decided only once all eight
    tasks have every planned seed; before that it is None).

    * best: ZPRL's best mode above the base's best mode on >= 6/8 tasks, its interval above 0 on >= 4;
    * auc: ZPRL's AUC >= each tuned baseline's on >= 6/8;
    * smooth: ZPRL's exploration jerk below the tuned action residual's on >= 6/8;
    * collapse: DSRL collapses on no task; collapsed = its final best mode's 95% interval lies entirely below
      its own first evaluation (mean over seeds), i.e. it ended surely worse than it started.
    Also, as a diagnostic: each method's AUC gain over its own start (AUC − first evaluation), since the
    methods start from different evaluations of the same base (dsrl's deterministic actor starts at ε = 0).
    """
    rows = {t: r for t, r in results["tasks"].items() if all(m in r for m in ("base", *METHODS))}
    n, z = len(rows), {t: r["zprl"] for t, r in rows.items()}
    others = [m for m in METHODS if m != "zprl"]
    jerk_pairs = [(z[t]["explore_jerk"], rows[t]["action-residual"]["explore_jerk"]) for t in rows]
    collapsed = sorted(t for t, r in rows.items() if r["dsrl"].get("start") is not None
                       and r["dsrl"]["final_best_ci95"][1] < r["dsrl"]["start"])
    out = {"tasks": n,
           "best": {"above": sum(z[t]["best_vs_base"] > 0 for t in rows),
                    "interval_above_0": sum(z[t]["best_vs_base_ci95"][0] > 0 for t in rows)},
           "auc": {m: sum(z[t]["auc"] >= rows[t][m]["auc"] for t in rows) for m in others},
           "smooth": sum(a < b for a, b in jerk_pairs if np.isfinite(a) and np.isfinite(b)),
           "collapse": collapsed,
           "auc_over_start": {m: {t: r[m]["auc"] - r[m]["start"] for t, r in rows.items()
                                  if r[m].get("start") is not None} for m in METHODS}}
    out["auc_over_start_zprl_ge"] = {m: sum(g >= out["auc_over_start"][m].get(t, np.inf)
                                            for t, g in out["auc_over_start"]["zprl"].items()) for m in others}
    complete = n == len(BENCHMARK_TASKS) and all(
        r[m]["seeds"] >= results.get("planned_seeds", 0) for r in rows.values() for m in METHODS)
    verdict = {"best": out["best"]["above"] >= 6 and out["best"]["interval_above_0"] >= 4,
               "auc": all(v >= 6 for v in out["auc"].values()), "smooth": out["smooth"] >= 6,
               "collapse": not collapsed}
    out["met"] = verdict if complete else None
    return out


def targets_text(t: dict) -> str:
    n = t["tasks"]
    if not n:
        return ""
    met = t.get("met")
    mark = (lambda k: " — met" if met[k] else " — **missed**") if met else (lambda k: "")
    gain = "; ".join(f"{m} on {c}/{n}" for m, c in t["auc_over_start_zprl_ge"].items())
    return ("Targets (issue 13), over the " + f"{n} task{'s' if n > 1 else ''} with every row"
            + ("" if met else " (not decided until all 8 tasks have every seed)") + ": "
            f"ZPRL's best mode above the base's best on {t['best']['above']}/{n} (target ≥ 6/8), its interval "
            f"above 0 on {t['best']['interval_above_0']} (≥ 4){mark('best')}; ZPRL's AUC ≥ "
            + ", ≥ ".join(f"{m}'s on {c}/{n}" for m, c in t["auc"].items()) + f" (≥ 6/8 each){mark('auc')}; "
            f"ZPRL explores more smoothly than the action residual on {t['smooth']}/{n} (≥ 6/8){mark('smooth')}; "
            f"DSRL collapsed (final best mode's interval below its first evaluation) on "
            f"{', '.join(t['collapse']) if t['collapse'] else 'no task'} (target: none){mark('collapse')}. "
            f"Diagnostic, AUC gained over its own first evaluation: ZPRL's ≥ {gain}.")


def diagnosis_text(diag: dict) -> str:
    if not diag:
        return ""
    name = DIAGNOSIS["name"]
    parts = []
    for task, rows in diag.items():
        cells = ", ".join(f"{m} {r['auc']:.2f} (from {r['start_success']:.2f})" for m, r in rows.items())
        parts.append(f"{task}: {cells}")
    return (f"Diagnosis (seed 0, tuning tasks; AUC and, in brackets, the first evaluation): `{name}` is the tuned "
            "ZPRL with the frozen sampler integrated from ε = 0 in training and evaluation (DSRL's actor starts "
            "at zero mean noise, so its evaluations start at the base's ε = 0 mode; ZPRL's and the action "
            "residual's evaluate the base's sampler). " + "; ".join(parts) + ".")


def family_summary(results: dict) -> str:
    """Per shift family and method: on how many tasks the best mode is above the base's best, and on how
    many its interval excludes zero."""
    lines = []
    for fam in dict.fromkeys(results.get("families", {}).values()):
        tasks = [t for t, f in results["families"].items() if f == fam and t in results["tasks"]]
        parts = []
        for method in METHODS:
            rows = [results["tasks"][t][method] for t in tasks if method in results["tasks"][t]]
            if rows:
                above = sum(r["best_vs_base"] > 0 for r in rows)
                sure = sum(r["best_vs_base_ci95"][0] > 0 for r in rows)
                parts.append(f"{method} {above}/{len(rows)} above the base's best ({sure} with the interval above 0)")
        if parts:
            lead = "; ".join(f"{what}: " + ", ".join(f"{m} {n}" for m, n in leaders(results["tasks"], tasks, key).items())
                             for what, key in (("highest final best mode", "final_best"), ("highest AUC", "auc")))
            lines.append(f"*{fam}* ({len(tasks)} task{'s' if len(tasks) > 1 else ''}): " + "; ".join(parts)
                         + f". Who leads, tasks per method (ties count for each): {lead}.")
    return "\n".join(lines)


def leaders(rows: dict, tasks: list[str], key: str) -> dict[str, int]:
    """On how many of ``tasks`` each RL method has the highest ``key`` (rounded to the tables' two decimals, so
    a tie in the table counts for every method in it); tasks missing a method's row are skipped."""
    counts = dict.fromkeys(METHODS, 0)
    for t in tasks:
        if not all(m in rows[t] for m in METHODS):
            continue
        vals = {m: round(rows[t][m][key], 2) for m in METHODS}
        for m, v in vals.items():
            counts[m] += v == max(vals.values())
    return counts


def table(results: dict) -> str:
    out = headline_table(results["tasks"], METHODS, planned_seeds=results.get("planned_seeds"),
                         shifts=results.get("shifts"))
    out += "\n\n" + HEADLINE_NOTE
    off = [t for t, r in results["tasks"].items() if r["base"].get("matches_calibration") is False]
    if off:  # the base rows re-evaluate the calibration's cells: a difference means something is not reproducible
        out += "\n\n**Warning:** the base row differs from its calibration cell on " + ", ".join(off) + "."
    verdicts = targets_text(results.get("targets") or {"tasks": 0})
    if verdicts:
        out += "\n\n" + verdicts
    diag = diagnosis_text(results.get("diagnosis") or {})
    if diag:
        out += "\n\n" + diag
    summary = family_summary(results)
    if summary:
        out += "\n\n" + summary
    settings = results.get("settings", {})
    if settings:
        out += ("\n\nSettings (picked on " + ", ".join(results.get("tuning_tasks", [])) + " by the sweep in "
                "tuning.json: " + PICK_RULE + "): " + "; ".join(f"{m}: {s['name']}" for m, s in settings.items()) + ".")
    stem = "finetune_shift_quick" if results.get("quick") else "finetune_shift"
    out += (f"\n\nCurves: benchmarks/results/{stem}_curves.png; best mode against the base: "
            f"benchmarks/results/{stem}_best.png.")
    w = results.get("wall_s", {})
    if w.get("mean_per_run"):
        out += (f"\n\nBudget: {results['env_steps']} env steps per run, {results.get('n_envs')} envs per run; "
                f"{results['runs']} recorded runs took {w['total'] / 3600:.1f} core-hours "
                f"({w['mean_per_run'] / 60:.0f} min per run on one core).")
    return out


# ------------------------------------------------------------------ driver
