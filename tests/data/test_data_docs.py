"""docs/data.md's example runs as written; the Recorder's rules; collect's errors without an expert."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from steerlab.cli import main
from steerlab.core.errors import UserError
from steerlab.data import Recorder
from steerlab.data.dataset import read_dataset

DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"


def test_data_doc_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    files = [b for b in blocks if b.startswith("# file: ")]
    scripts = [b for b in blocks if not b.startswith("# file: ") and "..." not in b]  # the sketch is not run
    assert files and scripts
    for block in files:
        (tmp_path / block.splitlines()[0].removeprefix("# file: ").strip()).write_text(block)
    monkeypatch.chdir(tmp_path)  # the CLI imports my_demonstrator from the current folder: no sys.path edit
    try:
        for script in scripts:
            exec(compile(script, str(DOC), "exec"), {"__name__": "__doc_example__"})
        out = capsys.readouterr().out
        assert "runs/reach_mixed 4 episodes (" in out and "runs/reach_mine 3 episodes (90, 4) (90, 2)" in out
        mixed, mine = read_dataset(tmp_path / "runs/reach_mixed"), read_dataset(tmp_path / "runs/reach_mine")
        assert mixed.extra["env_id"] == "steerlab/PointReach-v0"
        assert mixed.extra["demonstrator"] == "my_demonstrator:make_policy" and mixed.extra["quality"] == "mixed"
        assert np.abs(mixed.actions).max() <= 1.0  # noisy actions still clipped to the action space
        assert mine.task == "steerlab/PointReach-v0" and mine.rewards is not None
        assert [e["length"] for e in mine.episodes] == [30, 30, 30]
        assert str(tmp_path) not in sys.path  # the loader imported from the cwd without leaving it on sys.path
    finally:
        sys.modules.pop("my_demonstrator", None)


def test_collect_records_a_factory_policy_reproducibly(policy_module, tmp_path, capsys):
    ref = policy_module("noisy_demo", '''
import torch
class P(torch.nn.Module):
    obs_dim, action_dim, horizon, n_action_steps, noise_shape = 3, 1, 4, 2, (4, 1)
    def sample_chunk(self, obs, noise=None):
        return 2 * torch.tanh(obs[:, :1, None].expand(-1, 4, 1) + noise)
def make():
    return P()
''')
    for name in ("a", "b"):
        assert main(["collect", "--env", "Pendulum-v1", "--policy", ref, "--quality", "noisy", "--episodes", "3",
                     "--max-steps", "15", "--seed", "4", "--out", str(tmp_path / name)]) == 0
    a, b = read_dataset(tmp_path / "a"), read_dataset(tmp_path / "b")
    assert np.array_equal(a.actions, b.actions) and np.array_equal(a.observations, b.observations)
    assert a.actions.max() <= 2.0 and a.actions.min() >= -2.0  # Pendulum's own action range, not [-1, 1]
    assert "mean return" in capsys.readouterr().out


def test_collect_without_an_expert_asks_for_a_policy(tmp_path, capsys):
    assert main(["collect", "--env", "Pendulum-v1", "--episodes", "2", "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no scripted expert for 'Pendulum-v1'" in err and "--policy" in err
    assert not (tmp_path / "ds").exists()  # refused before any folder was made


def test_recorder_checks_frames_and_never_replaces_a_folder(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(UserError, match="already exists"):
        Recorder(tmp_path / "taken")
    rec = Recorder(tmp_path / "ds", obs_dim=3)
    with pytest.raises(UserError, match="obs has 2 values, the recording 3"):
        rec.add_frame([0.0, 1.0], [0.5])
    rec.add_frame([0, 1, 2], [0.5], reward=1.0)
    with pytest.raises(UserError, match="reward= on every frame or on none"):
        rec.add_frame([0, 1, 2], [0.5])
    with pytest.raises(UserError, match="NaN"):
        rec.add_frame([0, np.nan, 2], [0.5], reward=0.0)
    with pytest.raises(UserError, match="nothing was recorded"):
        Recorder(tmp_path / "empty").close()
    assert not (tmp_path / "empty").exists()


def test_recorder_keeps_finished_episodes_when_the_loop_fails(tmp_path):
    with pytest.raises(KeyboardInterrupt), Recorder(tmp_path / "ds", task="teleop", fps=5) as rec:
        for t in range(4):
            rec.add_frame([t, t], [0.1], success=t == 2)
        rec.end_episode()
        rec.add_frame([9, 9], [0.2])  # the interrupted episode: dropped
        raise KeyboardInterrupt
    ds = read_dataset(tmp_path / "ds")
    assert ds.num_episodes == 1 and len(ds.actions) == 4 and ds.rewards is None
    assert ds.episodes[0]["success"] is True  # a frame reported success
    assert ds.info["fps"] == 5 and ds.task == "teleop"
