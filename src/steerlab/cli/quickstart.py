"""`steerlab quickstart`: the whole imitation pipeline on a small default, in a few minutes on 2 cores.

collect mixed-quality demos -> pretrain flow policy + VIB -> evaluate -> table + plot.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from steerlab.core.checkpoint import atomic_write_json


def run_quickstart(args: argparse.Namespace) -> int:
    if getattr(args, "pixels", False):  # the image pipeline has its own defaults and steps
        from steerlab.cli.quickstart_pixels import run_pixels

        return run_pixels(args)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from steerlab.core.checkpoint import load_policy
    from steerlab.core.logger import read_metrics
    from steerlab.data.collect import collect_demos, preset_dict
    from steerlab.data.dataset import write_dataset
    from steerlab.eval.rollout import evaluate
    from steerlab.train.pretrain import PretrainConfig, pretrain

    out = Path(args.out)
    rows = []
    for quality in args.qualities:
        t0 = time.perf_counter()
        ds_dir = out / "datasets" / f"{args.task}__{quality}"
        episodes = collect_demos(args.task, args.episodes, quality, args.seed)
        write_dataset(ds_dir, episodes, args.task, extra_info={"quality": quality, "preset": preset_dict(quality),
                                                               "seed": args.seed, "max_steps": 200, "env": "metaworld"},
                      overwrite=True)  # quickstart reruns replace its own datasets under --out
        ckpt = pretrain(PretrainConfig(dataset=str(ds_dir), out=str(out / "policies" / f"{args.task}__{quality}"),
                                       steps=args.steps, seed=args.seed))
        result = evaluate(load_policy(ckpt), args.task, args.eval_episodes, args.seed, n_envs=2)
        atomic_write_json(ckpt / "eval.json", result)
        rows.append({"quality": quality, "demo_success": sum(e.success for e in episodes) / len(episodes),
                     "success": result["success"], "ci95": result["ci95"], "length": result["length_mean"],
                     "jerk": result["smoothness"]["jerk"], "seconds": time.perf_counter() - t0,
                     "loss_curve": read_metrics(ckpt)})

    print(f"\n## quickstart: {args.task}, {args.episodes} demos, {args.steps} pretraining steps, "
          f"{args.eval_episodes} evaluation episodes, seed {args.seed}\n")
    print("| demos | demo success | policy success [95% CI] | mean length | EE mean jerk | wall time |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['quality']} | {r['demo_success']:.2f} | {r['success']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] "
              f"| {r['length']:.0f} | {r['jerk']:.5f} | {r['seconds']:.0f} s |")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for r in rows:
        ax1.plot([m["step"] for m in r["loss_curve"]], [m["flow"] for m in r["loss_curve"]], label=r["quality"])
    ax1.set(xlabel="gradient step", ylabel="flow-matching loss", title="pretraining", yscale="log")
    ax1.legend()
    xs = range(len(rows))
    ax2.bar(xs, [r["success"] for r in rows],
            yerr=[[r["success"] - r["ci95"][0] for r in rows], [r["ci95"][1] - r["success"] for r in rows]],
            capsize=6, color="tab:blue", alpha=0.8)
    ax2.set_xticks(list(xs), [r["quality"] for r in rows])
    ax2.set(ylim=(0, 1), ylabel="success rate (95% Wilson CI)", title=f"{args.task} evaluation")
    fig.tight_layout()
    plot = out / "quickstart.png"
    fig.savefig(plot, dpi=110)
    atomic_write_json(out / "quickstart.json", [{k: v for k, v in r.items() if k != "loss_curve"} for r in rows])
    print(f"\nplot: {plot}\nresults: {out / 'quickstart.json'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="collect -> pretrain -> evaluate on a small default, with a table and plot",
                       description="Example: steerlab quickstart --task push-wall-v3")
    p.add_argument("--task", default="push-wall-v3")
    p.add_argument("--episodes", type=int, default=50, help="demonstrations per dataset")
    p.add_argument("--qualities", nargs="+", default=["expert", "mixed"], help="dataset quality presets to compare")
    p.add_argument("--steps", type=int, default=2000, help="pretraining gradient steps")
    p.add_argument("--eval-episodes", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/quickstart")
    p.add_argument("--pixels", action="store_true",
                   help="the image pipeline instead: collect camera demos, pretrain an image policy, evaluate "
                        "(defaults: reach-v3, 20 demos, 1500 steps, 10 episodes; runs/quickstart_pixels)")
    p.add_argument("--camera", default="corner2", help="with --pixels: the Meta-World camera")
    p.add_argument("--image-size", nargs=2, type=int, default=[84, 84], metavar=("H", "W"),
                   help="with --pixels: frame size")
    p.add_argument("--device", default="auto", help="with --pixels: auto | cpu | cuda | mps")
    # --pixels keeps its own defaults for the options a user did not set (compared with these)
    p.set_defaults(func=run_quickstart, parser_defaults={a.dest: a.default for a in p._actions})
