"""Layering: nothing below `train/` imports from `train/`, `core/` imports no stage, and no import cycles.

Walks every module's import statements (module-level and function-level: a lazy import is still a
dependency) with `ast`; no code is executed.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# packages below the training loops (DESIGN.md "Layers"); cli.py, quickstart.py, sweep.py sit on top
BELOW_TRAIN = ("core", "envs", "data", "policies", "rl", "privacy", "eval")


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
    assert "steerlab.train.finetune.cli" in graph["steerlab.train.cli"]  # function-level imports count


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
