"""docs/protocol.md's personalization level runs as written: a plain module of the user's, personalized."""

import json
import re
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_personalization_doc_example_runs(tmp_path, monkeypatch, capsys):
    section = DOC.read_text().split("## Personalization level", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    files = [b for b in blocks if b.startswith("# file: ")]
    scripts = [b for b in blocks if not b.startswith("# file: ")]
    assert files and scripts
    for block in files:
        (tmp_path / block.splitlines()[0].removeprefix("# file: ").strip()).write_text(block)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # the script itself imports my_chunk_policy, as a user's would
    try:
        for script in scripts:
            exec(compile(script, str(DOC), "exec"), {"__name__": "__doc_example__"})
        out = capsys.readouterr().out
        print(out)  # pytest -s shows the table a user sees
        assert "metric: R² of the first action" in out and "base (no personalization)" in out
        run_it = next(line for line in out.splitlines() if "Run it:" in line).split("Run it: ", 1)[1]
        assert run_it == "steerlab evaluate runs/alice_release --key alice.key --env steerlab/PointReach-v0"
        cases = json.loads((tmp_path / "runs/alice_release.private/cases.json").read_text())
        base, key, no_key = cases["base"], cases["cases"]["correct"], cases["cases"]["no_key"]
        assert key["personal"] > base["personal"] + 0.1  # the key gives Alice's behaviour
        assert no_key == base  # sealed: without the key, the base itself
        assert (tmp_path / "runs/alice_release.evals").is_dir()
    finally:
        sys.modules.pop("my_chunk_policy", None)
