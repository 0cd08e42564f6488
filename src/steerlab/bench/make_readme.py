"""Regenerate the README's results sections from benchmarks/results/*.json (never typed by hand).

Each section sits between `<!-- name:begin -->` and `<!-- name:end -->` markers in README.md; a
section whose results file does not exist yet says so instead of showing numbers.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

from steerlab.bench.common import BENCH_DIR, RESULTS, load_cell

README = BENCH_DIR.parent / "README.md"
# section -> (results file, module with table(results) -> markdown)
SECTIONS = {"pretrain": ("pretrain.json", "pretrain"), "finetune": ("finetune.json", "finetune"),
            "finetune_quick": ("finetune_quick.json", "finetune"), "finetune_shift": ("finetune_shift.json", "finetune_shift"),
            "ablations": ("ablations.json", "ablations"),
            "privacy": ("privacy.json", "privacy"), "throughput": ("throughput.json", "throughput"),
            "panda_pretrain": ("panda_pretrain.json", "panda"), "panda_finetune": ("panda_finetune.json", "panda"),
            "vector_efficiency": ("vector_efficiency.json", "vector_efficiency")}


def render(name: str) -> str:
    fname, module = SECTIONS[name]
    results = load_cell(RESULTS / fname)
    if results is None:
        flag = " --quick" if "quick" in fname else ""
        return f"_No recorded results yet: run `steerlab bench {module}{flag}`._"
    return importlib.import_module(f"steerlab.bench.{module}").table(results)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="steerlab bench make_readme", description=__doc__.splitlines()[0]).parse_args(argv)
    text = README.read_text()
    for name in SECTIONS:
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda m, n=name: m.group(1) + render(n) + "\n" + m.group(2), text)
    README.write_text(text)
    print(f"updated {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
