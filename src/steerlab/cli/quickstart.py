"""`steerlab quickstart`: what steerlab is for, in one command and a few minutes on 2 cores.

A base pretrained on imperfect demonstrations -> ZPRL improves it online -> a sealed personalization of the same
base for one user (right key: the user's behaviour; wrong key / no key: the base) -> one table, one figure.
The pipeline is steerlab.bench.quickstart (`steerlab bench quickstart_seeds` checks it over seeds).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import MISSING, fields
from pathlib import Path

from steerlab.bench.quickstart import QuickstartConfig

# fields the command line sets (the rest keep QuickstartConfig's defaults); --tiny keeps its own budget
OPTIONS = ("task", "shift", "quality", "demo_offset", "episodes", "steps", "env_steps", "eval_episodes", "seed")
BUDGETS = ("episodes", "steps", "env_steps", "eval_episodes")


def run_quickstart(args: argparse.Namespace) -> int:
    if getattr(args, "pixels", False):  # the image pipeline has its own defaults and steps
        from steerlab.cli.quickstart_pixels import run_pixels

        return run_pixels(args)
    from steerlab.bench.quickstart import run
    from steerlab.bench.quickstart_report import table
    from steerlab.core.config import check_count
    from steerlab.core.outdir import output_dir, read_marker
    from steerlab.data.collect import preset_dict
    from steerlab.envs.metaworld_env import check_task

    for name in BUDGETS:
        check_count(f"--{name.replace('_', '-')}", getattr(args, name))
    from steerlab.core.errors import UserError

    try:
        check_task(args.task)  # bad input fails before any folder is made
    except ValueError as err:
        raise UserError(f"--task: {err}") from None
    preset_dict(args.quality)
    from steerlab.envs.shifts import shift_name

    args.shift = shift_name(args.shift)  # canonical; 'none' -> None
    if args.demo_offset is not None and not any(args.demo_offset):
        args.demo_offset = None  # 0 0 0: the demonstrator aims at the goal itself
    chosen = {k: getattr(args, k) for k in OPTIONS if not (args.tiny and k in BUDGETS)}
    cfg = QuickstartConfig.tiny(**chosen) if args.tiny else QuickstartConfig(**chosen)
    out = Path(args.out)
    # a folder an earlier quickstart wrote is moved aside (never deleted); anything else needs --overwrite
    again = (read_marker(out) or {}).get("kind") == "quickstart"
    t0 = time.perf_counter()
    with output_dir(out, "quickstart", overwrite=args.overwrite or again) as (folder, _):
        summary = run(cfg, folder, workers=1 if args.tiny else 2)
    print("\n" + table(summary))
    load = summary["load_average"]
    print(f"\nwall time {time.perf_counter() - t0:.0f} s on {summary['cpus']} CPUs (load average {load['start'][0]:.1f} "
          f"at the start, {load['end'][0]:.1f} at the end): base {summary['seconds']['base']:.0f} s, then side by side "
          f"ZPRL {summary['seconds']['zprl']:.0f} s and the personalization + evaluations "
          f"{summary['seconds']['personalization']:.0f} s")
    p = summary["paths"]
    print(f"figure: {out / 'quickstart.png'}   results: {out / 'quickstart.json'}\n"
          f"try it:  steerlab evaluate {p['release']} --key {p['key']}     (the user's policy)\n"
          f"         steerlab evaluate {p['release']}                     (no key: the public base)\n"
          f"         steerlab evaluate {p['zprl']}/policy --noise-scale 0 (the ZPRL-steered policy)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="a base from imperfect demos -> ZPRL improves it -> a sealed personalization "
                                          "for one user; one table, one figure (minutes on 2 cores)",
                       description="Example: steerlab quickstart --seed 1 --out runs/quickstart-s1")
    d = {f.name: f.default_factory() if f.default is MISSING else f.default for f in fields(QuickstartConfig)
         if f.name in OPTIONS}
    p.add_argument("--task", default=d["task"], help="Meta-World task of the base, ZPRL and the user")
    p.add_argument("--shift", default=d["shift"], help="deployment shift of the base's demos, ZPRL and every "
                                                       "evaluation (docs/envs.md; 'none': no shift)")
    p.add_argument("--quality", "--qualities", dest="quality", default=d["quality"],
                   help="demonstration preset of the base (docs/envs.md)")
    p.add_argument("--demo-offset", nargs=3, type=float, default=d["demo_offset"], metavar=("X", "Y", "Z"),
                   help="the base's demonstrator aims this far beside the goal (metres; 0 0 0: at the goal)")
    p.add_argument("--episodes", type=int, default=d["episodes"], help="demonstrations the base imitates")
    p.add_argument("--steps", type=int, default=d["steps"], help="pretraining gradient steps")
    p.add_argument("--env-steps", type=int, default=d["env_steps"], help="ZPRL's budget in environment steps")
    p.add_argument("--eval-episodes", type=int, default=d["eval_episodes"],
                   help="evaluation episodes per row and sampler mode")
    p.add_argument("--seed", type=int, default=d["seed"], help="seed of everything the run draws")
    p.add_argument("--out", default="runs/quickstart", help="run folder (an earlier quickstart's is moved aside)")
    p.add_argument("--overwrite", action="store_true", help="move an existing folder of something else aside")
    p.add_argument("--tiny", action="store_true", help="every stage on a budget of seconds (a smoke test; the "
                                                      "numbers mean nothing)")
    p.add_argument("--pixels", action="store_true",
                   help="the image pipeline instead: collect camera demos, pretrain an image policy, evaluate "
                        "(defaults: reach-v3, 20 demos, 1500 steps, 10 episodes; runs/quickstart_pixels)")
    p.add_argument("--camera", default="corner2", help="with --pixels: the Meta-World camera")
    p.add_argument("--image-size", nargs=2, type=int, default=[84, 84], metavar=("H", "W"),
                   help="with --pixels: frame size")
    p.add_argument("--device", default="auto", help="with --pixels: auto | cpu | cuda | mps")
    # --pixels keeps its own defaults for the options a user did not set (compared with these)
    p.set_defaults(func=run_quickstart, parser_defaults={a.dest: a.default for a in p._actions})
