"""`steerlab bench <name> [args]`: run a registered benchmark (a module of steerlab.bench with `main(argv)`)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import steerlab.bench as bench_pkg

# library modules of the package that are not benchmarks themselves
HELPERS = {"common", "suite", "plots", "privacy_attacks", "sweep", "shift_suite", "headlines", "calibration",
           "quickstart", "quickstart_report", "shift_combined"}


def benchmarks() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(bench_pkg.__path__) if m.name not in HELPERS)


def run_bench(args: argparse.Namespace) -> int:
    from steerlab.core.errors import UserError

    if args.list or not args.name:
        print("benchmarks: " + ", ".join(benchmarks()) + "\n(steerlab bench <name> --help shows each one's options)")
        return 0
    if args.name not in benchmarks():
        raise UserError(f"unknown benchmark {args.name!r}; choose from {', '.join(benchmarks())}")
    module = importlib.import_module(f"steerlab.bench.{args.name}")
    if args.name == "records":
        return int(module.main(args.rest) or 0)
    from steerlab.bench import records

    records.unpack()  # the recorded runs, so a sweep resumes and --collect sees every run
    try:
        return int(module.main(args.rest) or 0)
    finally:
        changed = records.pack()  # new runs land in their benchmark's archive (commit it)
        if changed:
            print("updated run records: " + ", ".join(str(p) for p in changed))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark (steerlab bench --list)", add_help=False,
                       description="Run a benchmark: steerlab bench <name> [its options]; --list names them.")
    p.add_argument("name", nargs="?", help="benchmark name (see --list)")
    p.add_argument("--list", action="store_true", help="list the benchmarks")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own options (--help for them)")
    p.set_defaults(func=run_bench)
