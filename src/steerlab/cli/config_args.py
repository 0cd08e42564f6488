"""Command-line options generated from a config dataclass: the dataclass is the only place a default is written.

Every field becomes `--field-name` with the field's docstring as help and its default shown; a nested dataclass
field (FinetuneConfig.sac) becomes `--sac.field-name` for each of its fields; a dict field (steering options)
takes `--steering.key VALUE` pairs (VALUE parsed as JSON, else kept as a string) and a JSON object. A bool that
defaults to True is switched off by `--no-field-name`. `--config FILE` reads a JSON object of fields first; flags
on the line override it. We write this small generator instead of depending on tyro or draccus because our
commands keep their established short aliases (`--warmup`, `--task`) and JSON escape hatches, which a
generated parser must accept unchanged for every recorded resume command to keep working.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import textwrap
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any

from steerlab.core.errors import UserError

UNSET = argparse.SUPPRESS  # a nested option the user did not give is absent from the namespace


def field_docs(cls) -> dict[str, str]:
    """Attribute docstrings of a dataclass (the string literal right after each field), from its source."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body
        for node, nxt in zip(body, body[1:] + [None]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def default_of(f) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def flag(name: str, prefix: str = "") -> str:
    return f"--{prefix}{name.replace('_', '-')}"


def _converter(annotation: str, name: str):
    """A parser for one token of the field's type (annotations are strings: `from __future__ import annotations`)."""
    kinds = {k.strip() for k in annotation.split("|")}
    kinds.discard("None")

    def convert(text: str):
        if "None" in annotation and text.lower() == "none":
            return None
        if kinds == {"bool"}:
            if text.lower() in ("true", "1", "yes", "on"):
                return True
            if text.lower() in ("false", "0", "no", "off"):
                return False
            raise argparse.ArgumentTypeError(f"{flag(name)} expects true or false, got {text!r}")
        for kind, fn in (("int", int), ("float", float)):
            if kind in kinds:
                try:
                    return fn(text)
                except ValueError:
                    if kinds <= {"int", "float"}:
                        raise argparse.ArgumentTypeError(f"{flag(name)} expects {annotation}, got {text!r}") from None
        return text

    return convert


def json_object(text: str | None, option: str) -> dict:
    """A JSON-object option's value ({} when absent); bad JSON is one line naming the option (UserError)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{option} is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise UserError(f"{option} must be a JSON object like '{{\"key\": value}}', got {text!r}")
    return value


def add_config_args(p: argparse.ArgumentParser, cls, *, skip=(), positional=(), aliases=None, choices=None,
                    nested=None, shown_defaults=None, extra_help=None) -> None:
    """Add one option per field of `cls` (see the module's docstring). `nested`: {field: dataclass} for fields
    whose own fields become `--field.sub` options; `shown_defaults`: {field: dataclass instance} whose values the
    nested help shows as defaults (e.g. a preset); `extra_help`: text appended to a field's help."""
    docs, aliases, choices = field_docs(cls), aliases or {}, choices or {}
    nested, shown_defaults, extra_help = nested or {}, shown_defaults or {}, extra_help or {}
    for f in fields(cls):
        if f.name in skip:
            continue
        text = docs.get(f.name, "") + extra_help.get(f.name, "")
        if f.name in nested:
            sub_cls, sub_docs = nested[f.name], field_docs(nested[f.name])
            shown = shown_defaults.get(f.name) or sub_cls()
            g = p.add_argument_group(f"{f.name} options ({sub_cls.__name__}; --{f.name}.FIELD VALUE)")
            for sf in fields(sub_cls):
                g.add_argument(flag(sf.name, f"{f.name}."), dest=f"{f.name}.{sf.name}", default=UNSET,
                               type=_converter(str(sf.type), sf.name), metavar=str(sf.type).replace(" ", ""),
                               help=sub_docs.get(sf.name, "") + ("" if getattr(shown, sf.name) is None or getattr(shown, sf.name) is False else
                                                                 f" (default: {getattr(shown, sf.name)})"))
            continue
        if f.name in positional:
            p.add_argument(f.name, help=text)
            continue
        default, names = default_of(f), [flag(f.name), *aliases.get(f.name, ())]
        annotation = str(f.type)
        if annotation == "bool":
            if default:
                p.add_argument(f"--no-{f.name.replace('_', '-')}", dest=f.name, action="store_false",
                               help=f"{text} (on by default; this switches it off)")
            else:
                p.add_argument(*names, dest=f.name, action="store_true", help=text)
        elif annotation == "dict":
            p.add_argument(*names, dest=f.name, default=None, metavar="JSON",
                           help=f"{text} (a JSON object; or --{f.name.replace('_', '-')}.KEY VALUE per key)")
        else:
            p.add_argument(*names, dest=f.name, type=_converter(annotation, f.name), default=default,
                           choices=choices.get(f.name), help=text)


def split_dotted(argv: list[str], groups: tuple[str, ...]) -> tuple[list[str], dict[str, dict]]:
    """Take `--GROUP.key VALUE` / `--GROUP.key=VALUE` pairs of free-form dict fields out of `argv`."""
    rest, found = [], {g: {} for g in groups}
    i = 0
    while i < len(argv):
        arg = argv[i]
        group = next((g for g in groups if arg.startswith(f"--{g}.")), None)
        if group is None:
            rest.append(arg)
            i += 1
            continue
        key, eq, value = arg[len(group) + 3:].partition("=")
        if not eq:
            if i + 1 >= len(argv):
                raise UserError(f"{arg} needs a value")
            value, i = argv[i + 1], i + 1
        try:
            found[group][key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            found[group][key.replace("-", "_")] = value
        i += 1
    return rest, found


def read_config_file(path: str | None) -> dict:
    """A JSON object of config fields (`--config FILE`); {} without one."""
    if not path:
        return {}
    try:
        value = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"--config {path}: no such file") from None
    except json.JSONDecodeError as err:
        raise UserError(f"--config {path} is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise UserError(f"--config {path} must hold a JSON object of config fields")
    return value


def nested_values(args: argparse.Namespace, name: str) -> dict:
    """The `--name.field` options the user gave (absent ones are not in the namespace)."""
    head = f"{name}."
    return {k[len(head):]: v for k, v in vars(args).items() if k.startswith(head)}


def explicit_fields(p: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """Top-level dests the user actually spelled on the line (to let them override a config file)."""
    probe = argparse.ArgumentParser(add_help=False)
    for action in p._actions:
        if action.option_strings and action.dest != "help":
            kwargs = {"dest": action.dest, "default": UNSET}
            if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
                kwargs["action"] = "store_const"
                kwargs["const"] = True
            else:
                kwargs["nargs"] = action.nargs
            probe.add_argument(*action.option_strings, **kwargs)
    known, _ = probe.parse_known_args(argv)
    return set(vars(known))
