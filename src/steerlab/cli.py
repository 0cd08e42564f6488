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
    "steerlab.bench.cli",         # bench
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steerlab", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the sub-command
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        # commands that can resume handle SIGINT themselves (save, then exit 0); anything else stops here
        print(f"steerlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - every user-facing failure is one line; --debug shows the rest
        if args.debug:
            raise
        print(f"steerlab {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2


def one_line(err: BaseException) -> str:
    """The error as one line; errors that are not ours also name their type (they are likely bugs)."""
    from steerlab.core.errors import UserError

    msg = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, (UserError, FileNotFoundError, PermissionError, FileExistsError)):
        return msg
    return f"{type(err).__name__}: {msg} (rerun with --debug for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
