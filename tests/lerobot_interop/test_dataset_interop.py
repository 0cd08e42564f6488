"""LeRobot's own `LeRobotDataset` reads what steerlab writes (and agrees with steerlab on LeRobot's data)."""

import shutil
from pathlib import Path

import numpy as np
import offline_hf  # noqa: F401  (before lerobot)
import pytest
from conftest import make_episodes

from steerlab.data.dataset import Episode, read_dataset, write_dataset

pytestmark = pytest.mark.lerobot
pytest.importorskip("lerobot", reason="needs the lerobot extra (Python >= 3.12): `make test-lerobot`")

from lerobot.datasets import LeRobotDataset  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lerobot-v3"


def test_lerobot_reads_steerlab_dataset_with_the_task_string(tmp_path):
    eps = make_episodes(n=3, length=10)
    root = write_dataset(tmp_path / "ds", eps, "push-wall-v3", fps=80, extra_info={"env": "metaworld"})
    ds = LeRobotDataset("local/steerlab-push-wall", root=root)
    ours = read_dataset(root)
    assert len(ds) == len(ours.actions) and ds.num_episodes == 3
    for i in (0, 11, len(ds) - 1):
        item = ds[i]
        assert item["task"] == "push-wall-v3"
        np.testing.assert_array_equal(item["action"].numpy(), ours.actions[i])
        np.testing.assert_array_equal(item["observation.state"].numpy(), ours.observations[i])
        assert int(item["episode_index"]) == int(ours.episode_index[i])
    assert ds.meta.tasks.index.tolist() == ["push-wall-v3"]
    stats = ds.meta.stats
    for feat in ("observation.state", "action", "next.reward", "timestamp"):
        assert {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"} <= set(stats[feat])
    np.testing.assert_allclose(stats["action"]["mean"], ours.actions.mean(0), rtol=1e-5, atol=1e-6)
    assert ds.meta.episodes["length"] == [len(e.actions) for e in eps]


def test_lerobot_reads_steerlab_dataset_without_reward(tmp_path):
    eps = [Episode(e.observations, e.actions, None, e.success) for e in make_episodes(n=2, length=6)]
    root = write_dataset(tmp_path / "ds", eps, "pick cube", fps=30, robot_type=None)
    ds = LeRobotDataset("local/steerlab-teleop", root=root)
    assert ds[3]["task"] == "pick cube" and "next.reward" not in ds[3]


def test_lerobot_history_windows_on_steerlab_dataset(tmp_path):
    """LeRobot's delta_timestamps (what its training uses) work on a steerlab dataset, padding included."""
    eps = make_episodes(n=2, length=8)
    root = write_dataset(tmp_path / "ds", eps, "push-wall-v3", fps=10)
    ds = LeRobotDataset("local/steerlab-hist", root=root,
                        delta_timestamps={"observation.state": [-0.1, 0.0], "action": [0.0, 0.1, 0.2]})
    first = ds[0]
    assert first["observation.state"].shape == (2, 39) and first["action"].shape == (3, 4)
    assert first["observation.state_is_pad"].tolist() == [True, False]
    np.testing.assert_array_equal(first["observation.state"][0].numpy(), eps[0].observations[0])


def test_lerobot_and_steerlab_agree_on_lerobot_fixtures(tmp_path):
    for name in ("with-reward", "teleop"):
        root = shutil.copytree(FIXTURES / name, tmp_path / name)  # LeRobot may write caches next to it
        ds, ours = LeRobotDataset(f"local/{name}", root=root), read_dataset(root)
        assert len(ds) == len(ours.actions)
        for i in (0, len(ds) // 2, len(ds) - 1):
            np.testing.assert_array_equal(ds[i]["action"].numpy(), ours.actions[i])
            assert ds[i]["task"] == ours.task
