"""Figures for the benchmark results (all read from benchmarks/results/*.json)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_pretrain(results: dict, path: Path) -> None:
    tasks = list(results["tasks"])
    succ = [results["tasks"][t]["success"] for t in tasks]
    lo = [s - results["tasks"][t]["ci95"][0] for s, t in zip(succ, tasks)]
    hi = [results["tasks"][t]["ci95"][1] - s for s, t in zip(succ, tasks)]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar(range(len(tasks)), succ, yerr=[lo, hi], capsize=4, color="tab:blue", alpha=0.8, label="50 mixed demos")
    for name, s in results.get("sanity", {}).items():
        ax.axhline(s, ls="--", lw=1, color="gray")
        ax.text(len(tasks) - 0.5, s, f"{name} expert demos", fontsize=7, va="bottom", ha="right", color="gray")
    ax.set_xticks(range(len(tasks)), [t.replace("-v3", "") for t in tasks], rotation=30, ha="right")
    ax.set(ylim=(0, 1.05), ylabel="success (95% Wilson CI)", title="Base flow-matching policies")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
