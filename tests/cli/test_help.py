"""Help a person can use: a fast top level (no stage imported), every option explained with its default, and
progress that suits where it is written."""

import argparse
import io
import json
import subprocess
import sys

import pytest

from steerlab.cli import COMMANDS, build_parser
from steerlab.core.helpformat import HelpFormatter, shows_no_default
from steerlab.core.progress import PlainProgress, progress_bar

# `bench` hands its options to the chosen benchmark's own parser (steerlab bench NAME --help)
NOT_YET = {"bench"}


def _subparsers(parser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_top_level_parser_imports_no_stage():
    code = ("import sys, json; import steerlab.cli as c; p = c.build_parser(); "
            "p.format_help(); print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'mujoco', 'metaworld', 'gymnasium', 'numpy') or m.startswith('steerlab.'))))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    # the help formatter (argparse only) is all of steerlab it needs; no torch, no simulator, no stage
    assert loaded == ["steerlab.cli", "steerlab.core", "steerlab.core.helpformat"], loaded


def test_the_table_names_every_command_its_module_registers():
    full = _subparsers(build_parser("*"))
    assert set(full) == set(COMMANDS)
    for name in COMMANDS:  # choosing one command imports what registers it, and that defines it fully
        chosen = _subparsers(build_parser(name))[name]
        # `bench` passes --help on to the chosen benchmark (`steerlab bench finetune --help`); bare it lists them
        assert (chosen.add_help or name == "bench") and chosen.get_default("func") is not None, name


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - NOT_YET))
def test_every_option_has_help_and_shows_its_default(name):
    parser = _subparsers(build_parser(name))[name]
    formatter = parser._get_formatter()
    assert isinstance(formatter, HelpFormatter)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        where = f"{name} {'/'.join(action.option_strings) or action.dest}"
        assert action.help, f"{where} has no help"
        if not shows_no_default(action):
            assert "default" in formatter._get_help_string(action).lower(), f"{where} hides its default"
    text = parser.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text


def test_plain_progress_prints_whole_lines_periodically():
    out, now = io.StringIO(), [0.0]
    bar = PlainProgress(total=10, desc="collect x", unit="ep", file=out, interval=5.0, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 1.0
        bar.update(1)
        bar.set_postfix(success="0.50")
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines == ["collect x: 5/10 ep (50%), 1 ep/s, success=0.50", "collect x: 10/10 ep (100%), 1 ep/s, success=0.50"]


def test_progress_bar_is_tqdm_on_a_terminal_plain_elsewhere_silent_when_disabled():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    from tqdm import tqdm

    assert isinstance(progress_bar(range(3), file=Tty()), tqdm)
    plain = io.StringIO()
    assert list(progress_bar(range(3), file=plain, desc="d")) == [0, 1, 2]
    assert plain.getvalue() == "d: 3/3 it (100%), " + plain.getvalue().split("(100%), ")[1]
    assert plain.getvalue().count("\n") == 1
    quiet = io.StringIO()
    list(progress_bar(range(3), file=quiet, disable=True))
    assert quiet.getvalue() == ""
