"""Regenerate every results table in README.md and docs/results/*.md from benchmarks/results/*.json.

Each table sits between `<!-- name:begin -->` and `<!-- name:end -->` markers; a table whose results file does not
exist yet says so instead of showing numbers. Nothing in those tables is ever typed by hand.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

from steerlab.bench.common import BENCH_DIR, RESULTS, load_cell

ROOT = BENCH_DIR.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs" / "results").glob("*.md"))]
# table -> (results file, "module:function" of steerlab.bench rendering it to markdown)
SECTIONS = {"pretrain": ("pretrain.json", "pretrain:table"), "finetune": ("finetune.json", "finetune:table"),
            "finetune_quick": ("finetune_quick.json", "finetune:table"),
            "finetune_shift": ("finetune_shift.json", "finetune_shift:table"),
            "ablations": ("ablations.json", "ablations:table"), "privacy": ("privacy.json", "privacy:table"),
            "throughput": ("throughput.json", "throughput:table"),
            "panda_pretrain": ("panda_pretrain.json", "panda:table"),
            "panda_finetune": ("panda_finetune.json", "panda:table"),
            "panda_rule": ("panda_rule.json", "panda_rule:table"),
            "vector_efficiency": ("vector_efficiency.json", "vector_efficiency:table"),
            "reward_only": ("reward_only.json", "reward_only:table"),
            "quickstart_seeds": ("quickstart_seeds.json", "quickstart_seeds:table"),
            "finetune_pixels": ("finetune_pixels.json", "finetune_pixels:table"),
            "release_gate": ("release_gate.json", "release_gate:table"),
            "shift_rule": ("finetune_shift_rule.json", "shift_rule:table"),
            "critic_scale": ("critic_scale.json", "critic_scale:table"),
            "shift_holdout": ("finetune_shift_holdout.json", "shift_holdout:table"),
            "shift_holdout_tether": ("finetune_shift_holdout.json", "shift_holdout:tether_table"),
            "shift_holdout_draw2": ("finetune_shift_holdout_draw2.json", "shift_holdout:draw_tables"),
            "headline_zprl": ("finetune_shift.json", "headlines:zprl"),
            "headline_prop": ("privacy.json", "headlines:prop")}


def render(name: str) -> str:
    fname, target = SECTIONS[name]
    module, _, fn = target.partition(":")
    results = load_cell(RESULTS / fname)
    if results is None:
        flag = " --quick" if "quick" in fname else ""
        return f"_No recorded results yet: run `steerlab bench {module}{flag}`._"
    return getattr(importlib.import_module(f"steerlab.bench.{module}"), fn)(results)


def regenerate(text: str) -> str:
    for name in SECTIONS:
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda m, n=name: m.group(1) + render(n) + "\n" + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="steerlab bench make_readme", description=__doc__.splitlines()[0]).parse_args(argv)
    for doc in DOCUMENTS:
        text = doc.read_text()
        new = regenerate(text)
        if new != text:
            doc.write_text(new)
            print(f"updated {doc.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
