"""Conformance with LeRobotDataset v3 as LeRobot 0.6.1 itself writes it (pyarrow only, no lerobot needed).

tests/fixtures/lerobot-v3/ holds two datasets LeRobot wrote (see its README): `with-reward` (Meta-World
reach-v3 frames with next.reward/next.done) and `teleop` (no reward, no done). What steerlab writes for
the same kind of frames must have the same files, parquet schemas, info.json keys and stats keys; what
LeRobot writes must read here and train, with the task taken from the dataset.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from steerlab.core.checkpoint import load_policy
from steerlab.data.dataset import (
    DatasetError,
    Episode,
    aggregate_stats,
    compute_stats,
    read_dataset,
    write_dataset,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lerobot-v3"
FILES = ("data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet", "meta/tasks.parquet",
         "meta/info.json", "meta/stats.json")
STEERLAB_EPISODE_COLUMNS = {"success", "meta_json"}  # steerlab's own additions to the episode table


def episodes_like(fixture: str, seed: int = 0) -> list[Episode]:
    """Random episodes with the fixture's dimensions (and rewards iff the fixture has them)."""
    ds = read_dataset(FIXTURES / fixture)
    rng = np.random.default_rng(seed)
    eps = []
    for length in (7, 1, 12):  # a one-frame episode exercises LeRobot's "quantiles = mean" rule
        obs = rng.standard_normal((length, ds.observations.shape[1])).astype(np.float32)
        act = rng.standard_normal((length, ds.actions.shape[1])).astype(np.float32)
        rew = rng.random(length).astype(np.float32) if ds.rewards is not None else None
        eps.append(Episode(obs, act, rew, success=length > 5, meta={"length": length}))
    return eps


def schema_of(path: Path) -> list[tuple[str, str]]:
    return [(f.name, str(f.type)) for f in pq.read_schema(path)]


@pytest.fixture(params=["with-reward", "teleop"])
def pair(request, tmp_path):
    """(LeRobot-written fixture, steerlab-written dataset of the same kind)."""
    fixture = FIXTURES / request.param
    task = read_dataset(fixture).task
    info = json.loads((fixture / "meta" / "info.json").read_text())
    ours = write_dataset(tmp_path / request.param, episodes_like(request.param), task, fps=info["fps"],
                         robot_type=info["robot_type"], extra_info={"env": "test"})
    return fixture, ours


# ----------------------------------------------------------------- LeRobot -> steerlab

def test_reads_lerobot_dataset_with_reward():
    ds = read_dataset(FIXTURES / "with-reward")
    raw = pq.read_table(FIXTURES / "with-reward" / FILES[0]).to_pydict()
    assert ds.observations.shape == (138, 39) and ds.actions.shape == (138, 4)
    np.testing.assert_array_equal(ds.actions, np.asarray(raw["action"], np.float32))
    np.testing.assert_array_equal(ds.rewards, np.asarray(raw["next.reward"], np.float32))
    np.testing.assert_array_equal(ds.dones, np.asarray(raw["next.done"]))
    assert ds.tasks == ["reach-v3"] and ds.task == "reach-v3" and (ds.task_index == 0).all()
    assert [e["length"] for e in ds.episodes] == np.bincount(raw["episode_index"]).tolist()
    assert ds.num_episodes == 3
    assert ds.extra == {}  # a foreign dataset carries no steerlab metadata


def test_reads_teleop_dataset_without_reward_or_done():
    ds = read_dataset(FIXTURES / "teleop")
    assert ds.rewards is None
    assert ds.observations.shape == (40, 6) and ds.actions.shape == (40, 6)
    assert ds.task == "pick cube"
    # done is derived from the episode boundaries when the dataset has no next.done column
    ends = [e["dataset_to_index"] - 1 for e in ds.episodes]
    assert ds.dones.sum() == ds.num_episodes == 2 and ds.dones[ends].all()


def test_aggregation_reproduces_lerobot_stats():
    """Our aggregation of LeRobot's own per-episode stats gives LeRobot's stats.json, and our per-episode
    min/max/mean/std of the frames give LeRobot's per-episode columns."""
    for name in ("with-reward", "teleop"):
        root = FIXTURES / name
        stats = json.loads((root / "meta" / "stats.json").read_text())
        eps = pq.read_table(root / FILES[1]).to_pylist()
        frames = pq.read_table(root / FILES[0]).to_pydict()
        for feat, ref in stats.items():
            per_ep = [{k: np.asarray(e[f"stats/{feat}/{k}"], np.float64) for k in ref} for e in eps]
            agg = aggregate_stats(per_ep)
            assert set(agg) == set(ref)
            for k in ref:
                np.testing.assert_allclose(agg[k], ref[k], rtol=1e-6, atol=1e-9, err_msg=f"{name} {feat} {k}")
            values = np.asarray(frames[feat], np.float64)
            for e in eps:
                ours = compute_stats(values[e["dataset_from_index"]:e["dataset_to_index"]])
                for k in ("min", "max", "mean", "count"):
                    np.testing.assert_allclose(ours[k], e[f"stats/{feat}/{k}"], rtol=1e-5, atol=1e-6)
                # LeRobot accumulates the variance in float32, so near-constant columns differ in the 4th digit
                np.testing.assert_allclose(ours["std"], e[f"stats/{feat}/std"], rtol=1e-3, atol=1e-3)


def test_pretrain_on_lerobot_datasets_records_the_task(tmp_path):
    from steerlab.cli import main

    for name, task in (("with-reward", "reach-v3"), ("teleop", "pick cube")):
        out = tmp_path / f"policy-{name}"
        assert main(["pretrain", "--dataset", str(FIXTURES / name), "--out", str(out), "--steps", "3",
                     "--batch-size", "8", "--horizon", "4", "--n-action-steps", "2"]) == 0
        meta = json.loads((out / "config.json").read_text())
        assert meta["config"]["env"]["task"] == task and meta["pretrain"]["dataset_tasks"] == [task]
        policy = load_policy(out)
        assert policy.config.env["task"] == task
        assert policy.config.obs_dim == read_dataset(FIXTURES / name).observations.shape[1]


def test_fixture_folder_is_not_written(tmp_path):
    """Reading never writes into a dataset (the shared fixtures are read-only on CI)."""
    copy = shutil.copytree(FIXTURES / "teleop", tmp_path / "teleop")
    before = {p: p.stat().st_mtime_ns for p in copy.rglob("*")}
    read_dataset(copy)
    assert {p: p.stat().st_mtime_ns for p in copy.rglob("*")} == before


# ----------------------------------------------------------------- steerlab -> LeRobot layout

def test_same_files(pair):
    fixture, ours = pair
    for rel in FILES:
        assert (ours / rel).is_file(), rel


def test_data_parquet_schema_matches(pair):
    fixture, ours = pair
    assert schema_of(ours / FILES[0]) == schema_of(fixture / FILES[0])
    hf = json.loads(pq.read_schema(ours / FILES[0]).metadata[b"huggingface"])["info"]["features"]
    hf_ref = json.loads(pq.read_schema(fixture / FILES[0]).metadata[b"huggingface"])["info"]["features"]
    assert hf == hf_ref


def test_episode_parquet_schema_matches(pair):
    fixture, ours = pair
    ref = schema_of(fixture / FILES[1])
    got = [c for c in schema_of(ours / FILES[1]) if c[0] not in STEERLAB_EPISODE_COLUMNS]
    assert got == ref


def test_tasks_parquet_has_the_task_as_pandas_index(pair):
    fixture, ours = pair
    assert schema_of(ours / FILES[2]) == schema_of(fixture / FILES[2])
    meta = json.loads(pq.read_schema(ours / FILES[2]).metadata[b"pandas"])
    ref = json.loads(pq.read_schema(fixture / FILES[2]).metadata[b"pandas"])
    assert meta["index_columns"] == ref["index_columns"] == ["task"]
    assert meta["columns"] == ref["columns"] and meta["column_indexes"] == ref["column_indexes"]
    assert pq.read_table(ours / FILES[2]).to_pylist() == pq.read_table(fixture / FILES[2]).to_pylist()


def test_info_and_stats_keys_match(pair):
    fixture, ours = pair
    info, ref = (json.loads((d / "meta" / "info.json").read_text()) for d in (ours, fixture))
    assert set(info) == set(ref)  # no foreign keys: LeRobot warns about (and drops) unknown ones
    assert info["features"] == ref["features"]  # same dims here, so identical
    for k in ("codebase_version", "fps", "chunks_size", "data_path", "video_path", "robot_type", "total_tasks"):
        assert info[k] == ref[k], k
    stats, sref = (json.loads((d / "meta" / "stats.json").read_text()) for d in (ours, fixture))
    assert set(stats) == set(sref)
    for feat in sref:
        assert set(stats[feat]) == set(sref[feat]), feat
        assert all(len(stats[feat][k]) == len(sref[feat][k]) for k in sref[feat]), feat


def test_written_stats_are_lerobots_aggregate(pair):
    _, ours = pair
    ds = read_dataset(ours)
    s = ds.stats["action"]
    np.testing.assert_allclose(s["mean"], ds.actions.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s["std"], ds.actions.std(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s["min"], ds.actions.min(0))
    assert s["count"] == [len(ds.actions)]
    per_ep = [compute_stats(ds.actions[sl]) for sl in ds.episode_slices()]
    np.testing.assert_allclose(s["q50"], aggregate_stats(per_ep)["q50"])
    one = next(sl for sl in ds.episode_slices() if sl.stop - sl.start == 1)
    np.testing.assert_array_equal(compute_stats(ds.actions[one])["q99"], ds.actions[one][0])


def test_round_trip_and_steerlab_metadata(pair):
    _, ours = pair
    ds = read_dataset(ours)
    assert ds.extra["env"] == "test" and ds.extra["task"] == ds.task
    assert [e["meta"]["length"] for e in ds.episodes] == [7, 1, 12]
    assert [e["success"] for e in ds.episodes] == [True, False, True]


def test_mixed_reward_presence_is_refused(tmp_path):
    eps = episodes_like("with-reward")
    eps[1].rewards = None
    with pytest.raises(ValueError, match="every episode"):
        write_dataset(tmp_path / "ds", eps, "t")


def test_task_index_without_a_task_is_a_clear_error(tmp_path):
    root = shutil.copytree(FIXTURES / "teleop", tmp_path / "teleop")
    f = root / "meta" / "tasks.parquet"
    f.chmod(0o644)
    f.unlink()
    with pytest.raises(DatasetError, match="tasks.parquet"):
        read_dataset(root)


def test_reads_datasets_written_by_older_steerlab(tmp_path):
    """Before this layout, steerlab kept its metadata under info.json's "steerlab" key and the tasks as a
    plain column (no pandas index metadata); such datasets still read, task and metadata included."""
    import pyarrow as pa

    root = write_dataset(tmp_path / "old", episodes_like("with-reward"), "push-wall-v3", extra_info={"env": "metaworld"})
    extra = json.loads((root / "meta" / "steerlab.json").read_text())
    (root / "meta" / "steerlab.json").unlink()
    info = json.loads((root / "meta" / "info.json").read_text())
    (root / "meta" / "info.json").write_text(json.dumps(dict(info, steerlab=extra)))
    pq.write_table(pa.table({"task_index": pa.array([0], pa.int64()), "task": pa.array(["push-wall-v3"])}),
                   root / "meta" / "tasks.parquet")
    ds = read_dataset(root)
    assert ds.task == "push-wall-v3" and ds.extra == {"env": "metaworld", "task": "push-wall-v3"}


def expected_lerobot_images() -> list[dict]:
    """The frames tests/fixtures/lerobot-v3/make_with_images.py gave LeRobot (same generator, same order)."""
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(2):
        for _ in range(5):
            frames.append({"image": rng.integers(0, 256, (12, 16, 3), dtype=np.uint8),
                           "state": rng.standard_normal(4).astype(np.float32),
                           "action": rng.uniform(-1, 1, 4).astype(np.float32)})
    return frames


def test_steerlab_reads_a_lerobot_written_image_dataset():
    from steerlab.data.dataset import read_dataset

    ds = read_dataset(FIXTURES / "with-images")
    frames = expected_lerobot_images()
    images = ds.images["observation.images.corner2"]
    assert images.dtype == np.uint8 and images.shape == (10, 12, 16, 3)  # HWC uint8, as LeRobot stored them
    for i, f in enumerate(frames):
        np.testing.assert_array_equal(images[i], f["image"])
        np.testing.assert_array_equal(ds.observations[i], f["state"])
        np.testing.assert_array_equal(ds.actions[i], f["action"])
    assert ds.episode_index.tolist() == [0] * 5 + [1] * 5
