"""`steerlab` command line: each stage registers its own sub-commands.

A stage module exposes `register(subparsers)`; it adds its parsers and sets `func` on them. Keeping
the commands beside the code they drive means adding a stage never edits a central switch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# module path -> imported lazily so `steerlab keygen` does not pay for importing MuJoCo
COMMAND_MODULES = [
    "steerlab.data.cli",          # collect
    "steerlab.train.cli",         # pretrain, finetune
    "steerlab.eval.cli",          # evaluate
    "steerlab.privacy.cli",       # keygen, personalize, attack
    "steerlab.quickstart",        # quickstart
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steerlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # stage not built (yet); its commands are simply absent
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as err:
        # user errors (bad task, corrupt checkpoint, bad key file) get one clear line, not a traceback
        print(f"steerlab {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
