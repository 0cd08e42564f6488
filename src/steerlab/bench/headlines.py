"""The README's two short headline tables, one per product, built from the full results JSON (the full tables
are in docs/results/*.md). Numbers are read, never typed."""

from __future__ import annotations

from steerlab.bench.common import markdown_table

SHIFT_METHODS = ("zprl", "action-residual", "dsrl")


def zprl(results: dict) -> str:
    """Deployment-shift suite: final success in each method's best sampler mode vs the base's, and AUC; beside
    them ZPRL trained in the sampler mode the rule picked (finetune_shift_rule.json), where recorded."""
    from steerlab.bench.common import RESULTS, load_cell

    rule_results = load_cell(RESULTS / "finetune_shift_rule.json") or {}
    rule = rule_results.get("tasks", {})
    rows = []
    for task, t in sorted(results["tasks"].items()):
        cells = [task, results.get("shifts", {}).get(task, "—"), f"{t['base']['final_best']:.2f}"]
        for m in SHIFT_METHODS:
            r = t.get(m)
            cells.append("—" if r is None else f"{r['final_best']:.2f} / {r['auc']:.2f}")
        z = rule.get(task, {}).get("zprl_rule")
        cells.append("—" if not z else f"{z['final_best']:.2f} / {z['auc']:.2f}"
                     + ("" if z["seeds"] >= results["seeds"] else f" ({z['seeds']} seed{'s' if z['seeds'] > 1 else ''})"))
        rows.append(cells)
    head = ["task", "shift", "base (best mode)", *[f"{m}: final best / AUC" for m in SHIFT_METHODS],
            "zprl, rule's mode: final best / AUC"]
    return (markdown_table(head, rows) + f"\n\n{results['seeds']} seeds × {results['env_steps']:,} env steps per run; "
            f"'best' = the better of sampled and ε = 0 on 50 evaluation episodes per seed (the first 20 are the curve's). The first three methods are the grid "
            f"(ZPRL and the action residual trained in the base's sampled mode); the last column is ZPRL trained "
            f"and deployed in the mode the sampler-mode rule picked before any RL run (`steerlab bench shift_rule`). "
            f"Intervals, dips and the verdicts: [docs/results/finetune_shift.md](docs/results/finetune_shift.md)."
            + rule_verdict(rule_results.get("targets"))
            + holdout_line(load_cell(RESULTS / "finetune_shift_holdout.json"))
            + tether_line(load_cell(RESULTS / "finetune_shift_holdout_draw2.json")))


def holdout_line(res: dict | None) -> str:
    """The held-out check's counts in one line (steerlab bench shift_holdout), once it has a task with both methods."""
    if not res or not res["counts"]["tasks"]:
        return ""
    c, n = res["counts"], res["counts"]["tasks"]
    seeds = sorted({r[m]["seeds"] for r in res["tasks"].values() for m in ("zprl_rule", "dsrl_grid") if r.get(m)})
    state = "" if res["complete"] else f", partial: {'–'.join(map(str, seeds))} seed{'s' if seeds[-1] > 1 else ''}"
    return (f"\n\nOn {n} held-out task{'s' if n > 1 else ''} drawn and calibrated by a rule fixed before their runs "
            f"(`steerlab bench shift_holdout`{state}): ZPRL's AUC ≥ DSRL's on {c['auc_ge_dsrl']}/{n}, final best mode ≥ "
            f"DSRL's on {c['final_best_ge_dsrl']}/{n}, above the base's best on {c['above_base']}/{n} (interval clear of "
            f"0 on {c['above_base_interval_clear']}), dip no deeper than DSRL's on {c['dip_ge_dsrl']}/{n} and below "
            f"−0.10 on {len(c['dip_below_-0.10'])}.")


def tether_line(res: dict | None) -> str:
    """The second held-out draw's counts for the tethered ZPRL, in one sentence (it continues holdout_line's
    paragraph), once a task has both the variant and DSRL."""
    if not res or not res["tether"]["counts"]["tasks"]:
        return ""
    c, n = res["tether"]["counts"], res["tether"]["counts"]["tasks"]
    seeds = sorted({r[m]["seeds"] for r in res["tasks"].values() for m in ("zprl_tether", "dsrl_grid") if r.get(m)})
    state = "" if c["complete"] else f", partial: {'–'.join(map(str, seeds))} seed{'s' if seeds[-1] > 1 else ''}"
    z, nz = res["counts"], res["counts"]["tasks"]
    plain = "" if not nz else (f"ZPRL's AUC ≥ DSRL's on {z['auc_ge_dsrl']}/{nz}, final best ≥ on "
                               f"{z['final_best_ge_dsrl']}/{nz}, dip below −0.10 on {len(z['dip_below_-0.10'])}; ")
    return (f" On a second draw of {n} task{'s' if n > 1 else ''}, fixed before its runs (`--draw 2`{state}): {plain}ZPRL "
            f"with a tether β = {res['tether']['beta']}, a start fix chosen before the draw: AUC ≥ DSRL's on {c['auc_ge_dsrl']}/{n}, "
            f"final best mode ≥ DSRL's on {c['final_best_ge_dsrl']}/{n}, above the base's best on {c['above_base']}/{n}, "
            f"dip no deeper than DSRL's on {c['dip_ge_dsrl']}/{n} and below −0.10 on {len(c['dip_below_-0.10'])}.")


def rule_verdict(t: dict | None) -> str:
    """Issue 26's verdict in one line, once every task has every seed of ZPRL under the rule."""
    if not t or not t.get("met"):
        return ""
    word = {True: "met", False: "**missed**"}
    met = t["met"]
    return (f"\n\nZPRL in the rule's mode against tuned DSRL (issue 26's targets): AUC ≥ DSRL's on {t['auc_ge_dsrl']}/8 "
            f"(target 6, {word[met['auc']]}); final best mode ≥ DSRL's on {t['final_best_ge_dsrl']}/8 ({word[met['final']]}); "
            f"above the base's best on {t['above_base']}/8, interval clear of 0 on {t['above_base_interval_clear']} "
            f"({word[met['best']]}); dip no deeper than DSRL's on {t['dip_ge_dsrl']}/8 and ≥ −0.10 on every task "
            f"({word[met['dip']]}: below on {', '.join(t['dip_below_-0.10']) or 'none'}); best mode = deployed mode on "
            f"{t['best_is_deployed']}/8 ({word[met['deployed']]}).")


def prop(results: dict) -> str:
    """Private personalization: the personal score with the right key, no key and a wrong key, for the sealed
    release and the keyed (PRoP) model, and how much of the keyed model the best attack recovered."""
    rows = []
    for task, t in sorted(results["tasks"].items()):
        if "sealed" not in t or "prop" not in t:
            continue
        s, k = t["sealed"], t["prop"]
        best = results.get("attacks", {}).get(task, {})
        rows.append([task, f"{s['correct']['personal']:.2f}", f"{s['no_key']['personal']:.2f}",
                     f"{s['random']['personal']:.2f}", f"{best.get('sealed', {}).get('best_of_n', float('nan')):.2f}",
                     f"{k['correct']['personal']:.2f}", f"{best.get('prop', {}).get('best_of_n', float('nan')):.2f}"])
    head = ["task", "sealed: right key", "no key", "wrong key", "best attack recovers", "keyed (prop): right key",
            "best attack recovers"]
    return (markdown_table(head, rows) + "\n\nPersonal score: the task's own metric on the user's behaviour (accuracy, "
            "R² or success; no key and wrong keys score what the shared base scores). No attack recovers a sealed "
            "user; every keyed model is recovered by at least one attack. "
            "Every method, seed and attack: [docs/results/privacy.md](docs/results/privacy.md).")
