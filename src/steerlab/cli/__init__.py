"""`steerlab` command line: each stage registers its own sub-commands, imported only when chosen.

A stage module exposes a `register(subparsers)` function that adds its parsers and sets `func` on them,
so the commands live beside the code they drive. The table below names, for each command, where that
function is and a one-line help: `steerlab --help` and the top-level parser import no stage (no torch, no
MuJoCo), and `steerlab <command>` imports that command's module only.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> ("module:register function", one-line help for `steerlab --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "collect": ("steerlab.cli.collect:register", "record demonstrations (a scripted expert, or any policy on any env)"),
    "pretrain": ("steerlab.cli.pretrain:register", "behaviour-clone a flow-matching policy (+ plug-in VIB)"),
    "finetune": ("steerlab.cli.finetune:register",
                 "online RL on a frozen base policy (zprl / action-residual / dsrl / ...)"),
    "evaluate": ("steerlab.cli.evaluate:register", "evaluate a policy (checkpoint folder or module:factory)"),
    "keygen": ("steerlab.cli.privacy:register", "create a user key (random 128 bits, or from a passphrase)"),
    "personalize": ("steerlab.cli.privacy:register",
                    "private personalization (keyed PRoP or a sealed release) of a recipe or of your own policy"),
    "release": ("steerlab.cli.release:register",
                "one sealed release of several users' sealed parts (finetune --key, personalize) over one base"),
    "attack": ("steerlab.cli.privacy:register", "adaptive attacks on a keyed model (recovery, share, behaviours)"),
    "quickstart": ("steerlab.cli.quickstart:register", "a small end-to-end run with a table and a plot"),
    "bench": ("steerlab.cli.bench:register", "run a benchmark (steerlab bench --list names them)"),
}


class _CommandParser(argparse.ArgumentParser):
    """Every sub-command's parser: option help ends with the option's default (steerlab.core.helpformat)."""

    def __init__(self, *args, **kwargs):
        from steerlab.core.helpformat import HelpFormatter

        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _register(target: str, sub: argparse._SubParsersAction) -> bool:
    """Import `module:function` and let it add its parsers; False if the stage is not installed."""
    module_name, _, fn = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:  # stage not built (yet); its commands are simply absent
            return False
        raise
    getattr(module, fn)(sub)
    return True


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported (None: none, `steerlab --help`; "*": every one)."""
    parser = argparse.ArgumentParser(prog="steerlab", description="steerlab: post-train pretrained robot policies: record demonstrations, pretrain, steer them "
                                                 "with online RL (ZPRL), personalize them privately (PRoP).",
                                     epilog="`steerlab COMMAND --help` lists a command's options and defaults.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser)
    targets = list(dict.fromkeys(t for t, _ in COMMANDS.values()))
    load = targets if command == "*" else [COMMANDS[command][0]] if command in COMMANDS else []
    for target in load:
        _register(target, sub)
    for name, (_, text) in COMMANDS.items():  # the rest: names and help only, nothing imported
        if name not in sub.choices:
            sub.add_parser(name, help=text, add_help=False)
    return parser


def _command(argv: list[str]) -> str | None:
    """The sub-command named on the line (the first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the sub-command
    argv = [a for a in argv if a != "--debug"]
    args = build_parser(_command(argv)).parse_args(argv)
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
