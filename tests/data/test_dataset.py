import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import make_episodes

from steerlab.data.dataset import DatasetError, read_dataset, write_dataset


def test_round_trip_is_exact(tmp_path):
    eps = make_episodes()
    root = write_dataset(tmp_path / "ds", eps, "push-wall-v3")
    ds = read_dataset(root)
    np.testing.assert_array_equal(ds.observations, np.concatenate([e.observations for e in eps]))
    np.testing.assert_array_equal(ds.actions, np.concatenate([e.actions for e in eps]))
    np.testing.assert_array_equal(ds.rewards, np.concatenate([e.rewards for e in eps]))
    assert ds.num_episodes == len(eps)
    assert [e["length"] for e in ds.episodes] == [len(e.actions) for e in eps]
    assert [e["success"] for e in ds.episodes] == [e.success for e in eps]
    assert ds.episodes[2]["meta"] == eps[2].meta
    assert ds.dones.sum() == len(eps) and ds.dones[len(eps[0].actions) - 1]
    assert ds.info["total_frames"] == len(ds.actions) and ds.info["codebase_version"] == "v3.0"
    np.testing.assert_allclose(ds.stats["action"]["mean"], ds.actions.mean(0), rtol=1e-5, atol=1e-6)


def test_lerobot_v3_layout(tmp_path):
    root = write_dataset(tmp_path / "ds", make_episodes(), "push-wall-v3")
    table = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet")
    assert set(table.column_names) >= {"observation.state", "action", "episode_index", "frame_index",
                                       "timestamp", "index", "task_index", "next.reward", "next.done"}
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["features"]["observation.state"]["shape"] == [39]
    assert (root / "meta" / "stats.json").is_file() and (root / "meta" / "tasks.parquet").is_file()


def test_rewrite_replaces_atomically(tmp_path):
    from steerlab.core.errors import OutputExistsError

    root = write_dataset(tmp_path / "ds", make_episodes(n=2), "push-wall-v3")
    with pytest.raises(OutputExistsError):  # an existing dataset is replaced only when asked
        write_dataset(root, make_episodes(n=3), "push-wall-v3")
    assert read_dataset(root).num_episodes == 2
    write_dataset(root, make_episodes(n=3), "push-wall-v3", overwrite=True)
    assert read_dataset(root).num_episodes == 3
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no staging or backup folders left behind


def test_missing_info_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="meta/info.json"):
        read_dataset(tmp_path)


def test_missing_column_is_a_clear_error(tmp_path):
    root = write_dataset(tmp_path / "ds", make_episodes(), "push-wall-v3")
    f = root / "data" / "chunk-000" / "file-000.parquet"
    pq.write_table(pq.read_table(f).drop(["action"]), f)
    with pytest.raises(DatasetError, match="missing required columns"):
        read_dataset(root)


def test_corrupt_parquet_is_a_clear_error(tmp_path):
    root = write_dataset(tmp_path / "ds", make_episodes(), "push-wall-v3")
    (root / "data" / "chunk-000" / "file-000.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DatasetError, match="unreadable parquet"):
        read_dataset(root)


def test_nan_actions_are_rejected(tmp_path):
    eps = make_episodes()
    eps[1].actions[3, 0] = np.nan
    root = write_dataset(tmp_path / "ds", eps, "push-wall-v3")
    with pytest.raises(DatasetError, match="NaN"):
        read_dataset(root)


def test_wrong_version_is_rejected(tmp_path):
    root = write_dataset(tmp_path / "ds", make_episodes(), "push-wall-v3")
    info = json.loads((root / "meta" / "info.json").read_text())
    info["codebase_version"] = "v2.1"
    (root / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="v2.1"):
        read_dataset(root)
