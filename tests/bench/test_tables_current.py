"""Every results table in README.md and docs/results/*.md is what `steerlab bench make_readme` generates from
benchmarks/results/*.json now: no table is typed, and none is stale."""

import pytest

from steerlab.bench import make_readme


@pytest.mark.parametrize("doc", make_readme.DOCUMENTS, ids=lambda p: p.name)
def test_tables_are_generated_and_current(doc):
    text = doc.read_text()
    assert make_readme.regenerate(text) == text, f"run `steerlab bench make_readme` ({doc.name} is stale)"


def test_every_section_is_placed_somewhere():
    text = "".join(d.read_text() for d in make_readme.DOCUMENTS)
    missing = [n for n in make_readme.SECTIONS if f"<!-- {n}:begin -->" not in text]
    assert not missing, missing


def test_readme_is_short_and_keeps_its_two_commands():
    readme = make_readme.DOCUMENTS[0].read_text()
    assert len(readme.splitlines()) <= 250
    assert "make quickstart" in readme and "make test " in readme
