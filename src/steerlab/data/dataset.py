"""Demonstration datasets in the LeRobotDataset v3 layout, written and read with pyarrow only.

    <root>/meta/info.json                        schema, fps, counts, path templates
    <root>/meta/stats.json                       per-feature mean/std/min/max/count
    <root>/meta/tasks.parquet                    task_index -> task string
    <root>/meta/episodes/chunk-000/file-000.parquet   per-episode index ranges + collection metadata
    <root>/data/chunk-000/file-000.parquet       one row per frame

Frame columns: observation.state (list<float32>[obs_dim]), action (list<float32>[act_dim]),
episode_index, frame_index, timestamp, index, task_index, next.reward, next.done.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from steerlab.core.checkpoint import atomic_write_json

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
REQUIRED_COLUMNS = ("observation.state", "action", "episode_index", "frame_index", "timestamp", "index",
                    "task_index", "next.reward", "next.done")


class DatasetError(ValueError):
    """A dataset folder is missing files or does not match the LeRobotDataset v3 layout."""


@dataclass
class Episode:
    observations: np.ndarray  # (T, obs_dim) float32, observation before each action
    actions: np.ndarray       # (T, act_dim) float32
    rewards: np.ndarray       # (T,) float32, reward after each action
    success: bool
    meta: dict = field(default_factory=dict)  # e.g. noise level, whether cut short

    def __post_init__(self):
        t = len(self.actions)
        if self.observations.shape[0] != t or self.rewards.shape[0] != t:
            raise ValueError(f"episode arrays disagree in length: obs {self.observations.shape}, "
                             f"actions {self.actions.shape}, rewards {self.rewards.shape}")


@dataclass
class Dataset:
    observations: np.ndarray   # (N, obs_dim)
    actions: np.ndarray        # (N, act_dim)
    rewards: np.ndarray        # (N,)
    dones: np.ndarray          # (N,) bool, last frame of each episode
    episode_index: np.ndarray  # (N,)
    frame_index: np.ndarray    # (N,)
    info: dict
    stats: dict
    episodes: list[dict]

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    def episode_slices(self) -> list[slice]:
        return [slice(e["dataset_from_index"], e["dataset_to_index"]) for e in self.episodes]


def compute_stats(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64)
    return {"mean": x.mean(0).tolist(), "std": x.std(0).tolist(), "min": x.min(0).tolist(),
            "max": x.max(0).tolist(), "count": [int(x.shape[0])]}


def _fixed_list(arr: np.ndarray) -> pa.FixedSizeListArray:
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), arr.shape[1])


def write_dataset(root: str | Path, episodes: list[Episode], task: str, fps: int = 80,
                  robot_type: str = "sawyer", extra_info: dict | None = None) -> Path:
    """Write `episodes` as a LeRobotDataset v3 folder. The folder is built beside `root` and renamed
    into place, so an existing dataset is never left half-overwritten."""
    if not episodes:
        raise ValueError("cannot write a dataset with no episodes")
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.staging."))
    try:
        obs = np.concatenate([e.observations for e in episodes]).astype(np.float32)
        act = np.concatenate([e.actions for e in episodes]).astype(np.float32)
        rew = np.concatenate([e.rewards for e in episodes]).astype(np.float32)
        lengths = [len(e.actions) for e in episodes]
        ep_idx = np.concatenate([np.full(n, i, np.int64) for i, n in enumerate(lengths)])
        frame_idx = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths])
        done = np.concatenate([np.arange(n) == n - 1 for n in lengths])
        n = len(act)
        table = pa.table({
            "observation.state": _fixed_list(obs),
            "action": _fixed_list(act),
            "episode_index": pa.array(ep_idx),
            "frame_index": pa.array(frame_idx),
            "timestamp": pa.array((frame_idx / fps).astype(np.float32)),
            "index": pa.array(np.arange(n, dtype=np.int64)),
            "task_index": pa.array(np.zeros(n, np.int64)),
            "next.reward": pa.array(rew),
            "next.done": pa.array(done),
        })
        data_file = staging / DATA_PATH.format(chunk_index=0, file_index=0)
        data_file.parent.mkdir(parents=True)
        pq.write_table(table, data_file)

        starts = np.cumsum([0] + lengths)
        ep_table = pa.table({
            "episode_index": pa.array(np.arange(len(episodes), dtype=np.int64)),
            "length": pa.array(np.asarray(lengths, np.int64)),
            "dataset_from_index": pa.array(starts[:-1].astype(np.int64)),
            "dataset_to_index": pa.array(starts[1:].astype(np.int64)),
            "tasks": pa.array([[task]] * len(episodes)),
            "data/chunk_index": pa.array(np.zeros(len(episodes), np.int64)),
            "data/file_index": pa.array(np.zeros(len(episodes), np.int64)),
            "success": pa.array([bool(e.success) for e in episodes]),
            "meta_json": pa.array([json.dumps(e.meta, sort_keys=True) for e in episodes]),
        })
        ep_file = staging / EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_file.parent.mkdir(parents=True)
        pq.write_table(ep_table, ep_file)
        pq.write_table(pa.table({"task_index": pa.array([0], pa.int64()), "task": pa.array([task])}),
                       staging / "meta" / "tasks.parquet")

        features = {
            "observation.state": {"dtype": "float32", "shape": [obs.shape[1]], "names": None},
            "action": {"dtype": "float32", "shape": [act.shape[1]], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
            "next.reward": {"dtype": "float32", "shape": [1], "names": None},
            "next.done": {"dtype": "bool", "shape": [1], "names": None},
        }
        info = {
            "codebase_version": CODEBASE_VERSION, "robot_type": robot_type, "fps": fps,
            "total_episodes": len(episodes), "total_frames": n, "total_tasks": 1,
            "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 500,
            "splits": {"train": f"0:{len(episodes)}"}, "data_path": DATA_PATH, "video_path": None,
            "features": features, "steerlab": dict(extra_info or {}, task=task),
        }
        atomic_write_json(staging / "meta" / "info.json", info)
        atomic_write_json(staging / "meta" / "stats.json", {
            "observation.state": compute_stats(obs), "action": compute_stats(act),
            "next.reward": compute_stats(rew[:, None]),
        })
        # swap into place: old dataset (if any) is removed only after the new one is complete
        if root.exists():
            old = root.with_name(f".{root.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(root, old)
            os.replace(staging, root)
            shutil.rmtree(old)
        else:
            os.replace(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root


def _column_matrix(table: pa.Table, name: str, root: Path) -> np.ndarray:
    col = table.column(name).combine_chunks()
    if not pa.types.is_fixed_size_list(col.type) and not pa.types.is_list(col.type):
        raise DatasetError(f"{root}: column {name!r} must be a list of floats, got {col.type}")
    values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    width = col.type.list_size if pa.types.is_fixed_size_list(col.type) else len(col[0])
    if values.size != len(col) * width:
        raise DatasetError(f"{root}: column {name!r} has rows of unequal length")
    return values.reshape(len(col), width)


def read_dataset(root: str | Path) -> Dataset:
    """Read a LeRobotDataset v3 folder written by `write_dataset` (or by LeRobot with state obs)."""
    root = Path(root)
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise DatasetError(f"{root}: not a dataset (missing meta/info.json)")
    try:
        info = json.loads(info_path.read_text())
        stats = json.loads((root / "meta" / "stats.json").read_text())
    except (json.JSONDecodeError, FileNotFoundError) as err:
        raise DatasetError(f"{root}: meta/info.json or meta/stats.json is missing or not valid JSON ({err})") from err
    if not str(info.get("codebase_version", "")).startswith("v3"):
        raise DatasetError(f"{root}: codebase_version {info.get('codebase_version')!r} is not v3.x")
    files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    if not files:
        raise DatasetError(f"{root}: no data/chunk-*/file-*.parquet files")
    try:
        table = pa.concat_tables([pq.read_table(f) for f in files])
        ep_files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        ep_table = pa.concat_tables([pq.read_table(f) for f in ep_files]) if ep_files else None
    except (pa.ArrowInvalid, OSError) as err:
        raise DatasetError(f"{root}: unreadable parquet file ({err})") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise DatasetError(f"{root}: data is missing required columns {missing}")
    obs = _column_matrix(table, "observation.state", root)
    act = _column_matrix(table, "action", root)
    if not (np.isfinite(obs).all() and np.isfinite(act).all()):
        raise DatasetError(f"{root}: observation.state or action contains NaN/inf")
    ep_idx = table.column("episode_index").to_numpy()
    order = np.lexsort((table.column("frame_index").to_numpy(), ep_idx))
    obs, act, ep_idx = obs[order], act[order], ep_idx[order]
    frame_idx = table.column("frame_index").to_numpy()[order]
    if ep_table is not None:
        episodes = ep_table.to_pylist()
        for e in episodes:
            e["meta"] = json.loads(e.pop("meta_json", None) or "{}")
    else:  # derive episode ranges from the frame table
        bounds = np.flatnonzero(np.diff(ep_idx)) + 1
        starts, ends = np.r_[0, bounds], np.r_[bounds, len(ep_idx)]
        episodes = [{"episode_index": int(ep_idx[s]), "length": int(e - s), "dataset_from_index": int(s),
                     "dataset_to_index": int(e)} for s, e in zip(starts, ends)]
    total = sum(e["length"] for e in episodes)
    if total != len(act):
        raise DatasetError(f"{root}: episode lengths sum to {total} but the data has {len(act)} frames")
    return Dataset(
        observations=obs, actions=act,
        rewards=table.column("next.reward").to_numpy()[order].astype(np.float32),
        dones=table.column("next.done").to_numpy(zero_copy_only=False)[order].astype(bool),
        episode_index=ep_idx, frame_index=frame_idx, info=info, stats=stats, episodes=episodes,
    )
