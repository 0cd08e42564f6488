"""Layering (docs/architecture.md): each package imports only from the packages below it, no string names a
module of a higher layer (no lazy tables pointing up), and no import cycles, between modules or packages.

Walks every module's import statements (module-level and function-level: a lazy import is still a
dependency) and its string constants with `ast`; no code is executed.
"""

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# the layers, bottom to top (docs/architecture.md); `steerlab` itself (the package's __init__) is below all
LAYERS = ("core", "envs", "policies", "rl", "eval", "data", "privacy", "train", "bench", "cli")
BELOW_TRAIN = LAYERS[: LAYERS.index("train")]
MODULE_NAME = re.compile(r"\bsteerlab\.({})\b".format("|".join(LAYERS)))


def layer(module: str) -> int:
    """Rank of a module's package (-1: the top-level `steerlab` package itself)."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else -1


def import_graph() -> dict[str, set[str]]:
    modules = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        deps = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("steerlab"):
                    deps.add(t)
        graph[name] = deps
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_graph_sees_imports():
    graph = import_graph()
    assert "steerlab.core.checkpoint" in graph["steerlab.rl.steering.steered"]
    assert "steerlab.cli.evaluate" in graph["steerlab.cli.collect"]  # function-level imports count


def test_nothing_below_train_imports_train():
    bad = sorted(f"{m} -> {d}" for m, deps in import_graph().items()
                 if m.split(".")[1:2] and m.split(".")[1] in BELOW_TRAIN
                 for d in deps if d == "steerlab.train" or d.startswith("steerlab.train."))
    assert not bad, bad


def test_core_imports_no_stage():
    bad = sorted(f"{m} -> {d}" for m, deps in import_graph().items() if m.startswith("steerlab.core")
                 for d in deps if not d.startswith("steerlab.core") and d != "steerlab")
    assert not bad, bad


def test_no_import_cycles():
    assert find_cycles(import_graph()) == []


def test_every_package_has_a_layer():
    assert {m.split(".")[1] for m in import_graph() if "." in m} <= set(LAYERS)


def test_no_import_points_up_a_layer():
    bad = sorted(f"{m} -> {d}" for m, deps in import_graph().items() for d in deps if layer(d) > layer(m))
    assert not bad, bad


def test_no_string_names_a_module_of_a_higher_layer():
    """A table of "steerlab.x.y:loader" strings is an import in disguise (entry points are the way up)."""
    bad = []
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text(), str(path))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                for m in MODULE_NAME.finditer(node.value):
                    if LAYERS.index(m.group(1)) > layer(name):
                        bad.append(f"{name}: {node.value[:80]!r}")
    assert not bad, bad


def test_no_cycles_between_packages():
    packages: dict[str, set[str]] = {}
    for m, deps in import_graph().items():
        packages.setdefault(m.split(".")[1] if "." in m else "steerlab", set()).update(
            d.split(".")[1] if "." in d else "steerlab" for d in deps)
    for p, deps in packages.items():
        deps.discard(p)
    assert find_cycles(packages) == []
