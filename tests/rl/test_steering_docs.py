"""docs/steering.md's fifth method is one module + its registration, and it runs as written."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)


def test_fifth_method_doc_example_runs(tmp_path, monkeypatch, capsys):
    from steerlab.rl.steering import REGISTRY

    # the example steers the plain module of docs/protocol.md
    for block in _blocks(ROOT / "docs" / "protocol.md") + _blocks(ROOT / "docs" / "steering.md"):
        if block.startswith("# file: "):
            (tmp_path / block.splitlines()[0].removeprefix("# file: ").strip()).write_text(block)
    scripts = [b for b in _blocks(ROOT / "docs" / "steering.md") if not b.startswith("# file: ")]
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        for script in scripts:
            exec(compile(script, "docs/steering.md", "exec"), {"__name__": "__doc_example__"})
        assert "action-offset scale 0.2" in capsys.readouterr().out
        assert REGISTRY["action-offset"].__module__ == "action_offset"
        # a new process that never imported the module loads the checkpoint through its recorded module
        del REGISTRY["action-offset"]
        sys.modules.pop("action_offset", None)
        from steerlab.core.checkpoint import load_policy

        assert load_policy(tmp_path / "runs" / "offset" / "policy").adapter.name == "action-offset"
    finally:
        REGISTRY.pop("action-offset", None)
        for name in ("action_offset", "my_policy"):
            sys.modules.pop(name, None)


def test_register_refuses_a_taken_name():
    from steerlab.rl.steering import SteeringMethod, register

    class Clash(SteeringMethod):
        name = "zprl"

    with pytest.raises(ValueError, match="already registered"):
        register(Clash)
