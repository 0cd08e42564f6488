"""Figures for the benchmark results (all read from benchmarks/results/*.json)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


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


METHOD_COLORS = {"zprl": "tab:red", "action-residual": "tab:blue", "dsrl": "tab:green",
                 "embedding-residual": "tab:purple", "base": "black"}


def plot_finetune(results: dict, path: Path) -> None:
    """Success vs env steps per task (mean ± stderr over seeds), base as a dashed line and the same base
    sampled from ε = 0 as a dotted one; one legend for the figure (methods in the same colours everywhere)."""
    import numpy as np

    tasks = list(results["curves"])
    if not tasks:
        return
    cols = min(4, len(tasks))
    rows = (len(tasks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for method, runs in results["curves"][task].items():
            n = min(len(r["success"]) for r in runs)
            steps = np.array(runs[0]["steps"][:n])
            ys = np.array([r["success"][:n] for r in runs])
            mean = ys.mean(0)
            err = ys.std(0) / np.sqrt(len(runs)) if len(runs) > 1 else np.zeros_like(mean)
            c = METHOD_COLORS.get(method)
            ax.plot(steps / 1000, mean, color=c, label=method)
            ax.fill_between(steps / 1000, mean - err, mean + err, color=c, alpha=0.2)
        base = results["tasks"][task].get("base", {})
        sampled = base.get("final_success", base.get("final_sampled"))  # finetune.json / finetune_shift.json names
        eps0 = base.get("final_zero_noise_success", base.get("final_eps0"))
        if sampled is not None:
            ax.axhline(sampled, ls="--", color="black", lw=1, label="base")
        if eps0 is not None:
            ax.axhline(eps0, ls=":", color="gray", lw=1.2, label="base from ε = 0")
        seeds = max(len(r) for r in results["curves"][task].values())
        ax.set(title=f"{task} ({seeds} seed{'s' if seeds > 1 else ''})", xlabel="env steps (k)", ylabel="success",
               ylim=(-0.02, 1.02))
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 if rows > 1 else 0.1, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_best_vs_base(results: dict, path: Path) -> None:
    """Per task: each method's best mode (sampled or ε = 0) beside the base's best mode, 95% intervals over
    seeds and episodes (steerlab.bench.suite)."""
    import numpy as np

    tasks = [t for t in results["tasks"] if "base" in results["tasks"][t]]
    if not tasks:
        return
    methods = ["base", *[m for m in METHOD_COLORS if m != "base" and any(m in results["tasks"][t] for t in tasks)]]
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(tasks)), 3.6))
    for j, method in enumerate(methods):
        xs, ys, lo, hi = [], [], [], []
        for i, t in enumerate(tasks):
            m = results["tasks"][t].get(method)
            if m is None:
                continue
            xs.append(i + (j - (len(methods) - 1) / 2) * width)
            ys.append(m["final_best"])
            lo.append(max(m["final_best"] - m["final_best_ci95"][0], 0.0))
            hi.append(max(m["final_best_ci95"][1] - m["final_best"], 0.0))
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, color=METHOD_COLORS.get(method), alpha=0.85, label=method)
    shifts = results.get("shifts", {})
    ax.set_xticks(np.arange(len(tasks)), [t.replace("-v3", "") + (f"\n{shifts[t]}" if t in shifts else "")
                                          for t in tasks], fontsize=7)
    ax.set(ylim=(0, 1.05), ylabel="final success, best mode (95%)")
    ax.legend(fontsize=7, ncol=len(methods), loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


_PRIVACY_METHODS = ["prop", "key_mlp", "cvae", "finetune", "lora", "prop_output", "prop_rawbits", "prop_frozen"]


def _method_color(method: str):
    """One colour per method in every panel (tasks have different method sets: no CVAE for RL)."""
    i = _PRIVACY_METHODS.index(method) if method in _PRIVACY_METHODS else len(_PRIVACY_METHODS)
    return plt.get_cmap("tab10")(i % 10)


def plot_privacy(results: dict, out_dir: Path) -> None:
    """Leakage vs wrong key bits, and the key-case table as grouped bars."""
    # tasks scored by rollouts (Meta-World) have no leakage curve: they get no panel
    leak = {t: by for t, by in results.get("leakage_vs_hamming", {}).items() if any(by.values())}
    if leak:
        cols = min(3, len(leak))
        rows = (len(leak) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
        for ax in list(axes.flat)[len(leak):]:
            ax.axis("off")
        for ax, (task, by) in zip(axes.flat, leak.items()):
            for method, curve in by.items():
                ds = sorted(curve, key=int)
                ax.plot([int(d) for d in ds], [curve[d] for d in ds], marker="o", label=method,
                        color=_method_color(method))
            base = results["meta"][task]["base"]["personal"]
            ax.axhline(base, ls="--", color="gray", lw=1, label="public base")
            ax.set(title=task, xlabel="wrong key bits", ylabel="personal score", xscale="symlog")
        handles = {}
        for ax in axes.flat:
            for h, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, h)
        fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        fig.savefig(out_dir / "privacy_leakage.png", dpi=100)
        plt.close(fig)
    tasks = results.get("tasks", {})
    if tasks:
        cases = ["correct", "random", "near_miss_1", "no_key"]
        cols = min(3, len(tasks))
        rows = (len(tasks) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.4 * rows), squeeze=False)
        for ax in list(axes.flat)[len(tasks):]:
            ax.axis("off")
        for ax, (task, by) in zip(axes.flat, tasks.items()):
            methods = list(by)
            w = 0.8 / len(methods)
            for i, m in enumerate(methods):
                vals = [by[m][c]["personal"] if c == "correct" else by[m][c]["general"] for c in cases]
                ax.bar([j + i * w for j in range(len(cases))], vals, w, label=m, color=_method_color(m))
            ax.set_xticks([j + 0.4 - w / 2 for j in range(len(cases))],
                          ["correct\n(personal)", "random\n(general)", "1 bit off\n(general)", "no key\n(general)"],
                          fontsize=7)
            ax.set(title=task, ylim=(0, 1.05))
        handles = {}
        for ax in axes.flat:
            for h, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, h)
        fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        fig.savefig(out_dir / "privacy_table.png", dpi=100)
        plt.close(fig)


def plot_vector_efficiency(results: dict, path: Path) -> None:
    """Success vs env steps per task, one line per number of envs (each seed thin, their mean thick)."""
    import numpy as np

    tasks = [t for t in results["tasks"] if results["tasks"][t]]
    if not tasks:
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.2), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, task in zip(axes.flat, tasks):
        for k, (n, m) in enumerate(results["tasks"][task].items()):
            c = colors[k % len(colors)]
            curves = m["curves"]
            for cv in curves if len(curves) > 1 else []:
                ax.plot(np.array(cv["steps"]) / 1000, cv["success"], color=c, lw=0.7, alpha=0.4)
            length = min(len(cv["success"]) for cv in curves)
            steps = np.array(curves[0]["steps"][:length]) / 1000
            mean = np.mean([cv["success"][:length] for cv in curves], axis=0)
            rate = m.get("train_env_steps_per_s")
            label = f"N = {n}: AUC {m['auc']:.2f}" + (f", {rate:.0f} steps/s" if rate else "")
            ax.plot(steps, mean, color=c, lw=2, marker="o", ms=3, label=label)
        seeds = max(len(m["seeds"]) for m in results["tasks"][task].values())
        ax.set(title=f"{task}, {results['method']} ({seeds} seed{'s' if seeds > 1 else ''})", xlabel="env steps (k)",
               ylabel="eval success", ylim=(-0.02, 1.02))
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
