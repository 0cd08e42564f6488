"""The quickstart's one table and one figure, from its summary (steerlab.bench.quickstart.run)."""

from __future__ import annotations

from pathlib import Path

ROWS = ("base", "zprl", "right_key", "wrong_key", "no_key")
LABELS = {"base": "base", "zprl": "ZPRL-steered", "right_key": "sealed: right key",
          "wrong_key": "sealed: wrong key", "no_key": "sealed: no key"}

MODES = (("sampled", "success, sampled"), ("eps0", "success, ε = 0"), ("user_eps0", "user's goal, ε = 0"))


def _rate(r: dict | None) -> str:
    if r is None:
        return "—"
    return f"{r['success']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"


def table(summary: dict) -> str:
    """The markdown table: one row per policy, success sampled / ε = 0 and the user's objective, 95% intervals."""
    cfg, rows = summary["config"], summary["rows"]
    shift = f" under {cfg['shift']}" if cfg.get("shift") else ""
    n = rows["base"]["eps0"]["episodes"]
    trained = {"eps0": "ε = 0", "sampled": "sampled"}.get(summary.get("trained_mode") or "", "?")
    lines = [f"## steerlab quickstart: {cfg['task']}{shift}, seed {cfg['seed']} — every number measured in this run",
             "",
             f"success = the task's own goal, {n} evaluation episodes per cell (the same episodes for every policy); "
             f"user's goal = the hand within 5 cm of the goal moved by {cfg['goal_offset']} m, "
             f"{rows['base']['user_eps0']['episodes']} episodes; [95% Wilson interval]",
             "",
             "| policy | " + " | ".join(h for _, h in MODES) + " | sealed part opened |",
             "|---|---|---|---|---|"]
    aim = f" aimed {cfg['demo_offset']} m off the goal" if cfg.get("demo_offset") else ""
    what = {"base": f"{cfg['episodes']} {cfg['quality']} demos{aim}, {cfg['steps']} pretraining steps",
            "zprl": f"{cfg['env_steps']} env steps, trained at {trained}",
            "right_key": "user.key", "wrong_key": "wrong.key", "no_key": "public base only"}
    for name in ROWS:
        r = rows[name]
        opened = "—" if "opened" not in r else ("yes" if r["opened"] else "no")
        lines.append(f"| {LABELS[name]} ({what[name]}) | " + " | ".join(_rate(r.get(m)) for m, _ in MODES)
                     + f" | {opened} |")
    g = summary["gain"]
    lines += ["", "ZPRL − base: " + "; ".join(
        f"{label.split(', ')[1]} {g[m]['diff']:+.2f} (±{g[m]['margin']:.2f} at 95%: {g[m]['verdict']})"
        for m, label in MODES[:2])]
    return "\n".join(lines)


def figure(summary: dict, path: Path) -> None:
    """Left: ZPRL's learning curve against the base; right: every row's success (both modes) and the user's goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cfg, rows = summary["config"], summary["rows"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 1.5]})
    trained = summary.get("trained_mode") or "sampled"
    curve = [p for p in summary["curve"] if p["success"] is not None]
    ax1.plot([p["step"] for p in curve], [p["success"] for p in curve], "o-", color="tab:green",
             label=f"ZPRL ({cfg['curve_episodes']} episodes per point)")
    b = rows["base"][trained]
    ax1.axhline(b["success"], color="tab:gray", ls="--", label=f"base ({b['episodes']} episodes)")
    ax1.axhspan(*b["ci95"], color="tab:gray", alpha=0.15)
    s = rows["zprl"][trained]
    ax1.errorbar([cfg["env_steps"]], [s["success"]], yerr=[[s["success"] - s["ci95"][0]], [s["ci95"][1] - s["success"]]],
                 fmt="s", color="tab:green", capsize=5, label=f"ZPRL final ({s['episodes']} episodes)")
    warm = cfg.get("finetune_overrides", {}).get("warmup_decisions", 2000) * 2
    ax1.axvspan(0, min(warm, cfg["env_steps"]), color="tab:orange", alpha=0.08, label="warm-up (acts as the base)")
    mode = "ε = 0" if trained == "eps0" else "sampled"
    ax1.set(xlabel="environment steps", ylabel=f"success ({mode}, the mode ZPRL trained in)", ylim=(0, 1.02),
            title=f"ZPRL on {cfg['task']}")
    ax1.legend(fontsize=8, loc="lower right")

    x = np.arange(len(ROWS))
    width = 0.27
    colors = {"sampled": "tab:blue", "eps0": "tab:green", "user_eps0": "tab:purple"}
    for j, (m, label) in enumerate(MODES):
        vals, lo, hi, xs = [], [], [], []
        for i, name in enumerate(ROWS):
            r = rows[name].get(m)
            if r is None:
                continue
            xs.append(i + (j - 1) * width)
            vals.append(r["success"])
            lo.append(r["success"] - r["ci95"][0])
            hi.append(r["ci95"][1] - r["success"])
        ax2.bar(xs, vals, width, yerr=[lo, hi], capsize=3, color=colors[m], alpha=0.85, label=label)
    ax2.set_xticks(x, [LABELS[n].replace(": ", ":\n") for n in ROWS], fontsize=8)
    ax2.set(ylim=(0, 1.05), ylabel="success rate (95% Wilson interval)", title="every row, same episodes")
    ax2.legend(fontsize=8, loc="upper right", ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
