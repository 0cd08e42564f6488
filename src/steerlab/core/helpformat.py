"""The help formatter every `steerlab` command uses: each option's help ends with its default.

argparse.ArgumentDefaultsHelpFormatter also prints `(default: None)` and `(default: False)` and repeats
defaults the help already states; this one adds `(default: X)` only where there is a value to show and the
help does not already say it.
"""

from __future__ import annotations

import argparse


def shows_no_default(action: argparse.Action) -> bool:
    """Nothing to show: no default (None), a flag's off state (False), or a suppressed one."""
    return action.default is None or action.default is False or action.default == argparse.SUPPRESS


class HelpFormatter(argparse.HelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if shows_no_default(action) or "default" in text.lower():
            return text
        default = action.default
        if isinstance(default, list | tuple):
            default = " ".join(str(d) for d in default)
        return f"{text} (default: {str(default).replace('%', '%%')})"
