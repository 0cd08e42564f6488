"""docs/protocol.md's example is executed as written: a plain nn.Module steered by three methods."""

import re
import sys
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_protocol_doc_example_runs(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(DOC.read_text())
    files = [b for b in blocks if b.startswith("# file: ")]
    scripts = [b for b in blocks if not b.startswith("# file: ")]
    assert files and scripts
    for block in files:
        name = block.splitlines()[0].removeprefix("# file: ").strip()
        (tmp_path / name).write_text(block)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import my_policy

        before = {k: v.clone() for k, v in my_policy.make_policy().state_dict().items()}
        for script in scripts:
            exec(compile(script, str(DOC), "exec"), {"__name__": "__doc_example__"})
        out = capsys.readouterr().out
        for method in ("action-residual", "dsrl", "zprl"):
            assert f"{method} (1, 4, 2)" in out
            assert (tmp_path / "runs" / f"my_policy_{method}" / "policy" / "config.json").is_file()
        # the steered checkpoints carry the wrapped policy's weights unchanged
        from steerlab.core.checkpoint import load_policy

        steered = load_policy(tmp_path / "runs" / "my_policy_zprl" / "policy")
        for k, v in steered.base.policy.state_dict().items():
            assert torch.equal(v, before[k]), k
    finally:
        sys.modules.pop("my_policy", None)
