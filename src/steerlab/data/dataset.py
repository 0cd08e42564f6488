"""Demonstration datasets in the LeRobotDataset v3 layout, written and read with pyarrow only.

    <root>/meta/info.json                        schema, fps, counts, path templates (LeRobot's keys only)
    <root>/meta/stats.json                       per-feature min/max/mean/std/count + q01..q99 quantiles
    <root>/meta/tasks.parquet                    task strings as the pandas index + a task_index column
    <root>/meta/episodes/chunk-000/file-000.parquet   per-episode ranges, tasks, stats/<feature>/<stat>
    <root>/meta/steerlab.json                    steerlab's own collection metadata (env, quality, seed...)
    <root>/data/chunk-000/file-000.parquet       one row per frame
    <root>/videos/<camera key>/chunk-000/file-000.mp4   camera frames as video features (data/videos.py)

Frame columns, in LeRobot's order: observation.state (list<float32>[obs_dim]), action
(list<float32>[act_dim]), next.reward, next.done (both optional: imitation never needs them), timestamp,
frame_index, episode_index, index, task_index; camera frames as image columns (data/images.py) or mp4s.

What steerlab writes is what LeRobot 0.6.1 writes for the same frames (the layouts are compared against
datasets LeRobot wrote itself in tests/data/test_lerobot_format.py), so `LeRobotDataset(root=...)` reads
it with `dataset[i]["task"]` the task string; and what LeRobot writes (state observations) reads here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import steerlab.data.videos as videos
from steerlab.core.io import atomic_dir, atomic_write_json
from steerlab.data.images import camera_frames, image_column, image_feature, image_stats, read_image_features

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
STEERLAB_META = "meta/steerlab.json"
REQUIRED_COLUMNS = ("observation.state", "action", "episode_index", "frame_index", "timestamp", "index",
                    "task_index")
REWARD_COLUMNS = ("next.reward", "next.done")  # optional: only RL from a dataset would need them
# LeRobot's quantiles (compute_stats.DEFAULT_QUANTILES) and their stats.json keys
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}


class DatasetError(ValueError):
    """A dataset folder is missing files or does not match the LeRobotDataset v3 layout."""


@dataclass
class Episode:
    observations: np.ndarray  # (T, obs_dim) float32, observation before each action
    actions: np.ndarray       # (T, act_dim) float32
    rewards: np.ndarray | None  # (T,) float32, reward after each action; None: no reward/done columns
    success: bool
    meta: dict = field(default_factory=dict)  # e.g. noise level, whether cut short
    images: dict | None = None  # camera -> (T, H, W, 3) uint8 frames (data/images.py), or None

    def __post_init__(self):
        t = len(self.actions)
        if self.observations.shape[0] != t or (self.rewards is not None and self.rewards.shape[0] != t):
            shape = None if self.rewards is None else self.rewards.shape
            raise ValueError(f"episode arrays disagree in length: obs {self.observations.shape}, "
                             f"actions {self.actions.shape}, rewards {shape}")


@dataclass
class Dataset:
    observations: np.ndarray   # (N, obs_dim)
    actions: np.ndarray        # (N, act_dim)
    rewards: np.ndarray | None  # (N,), None when the dataset has no next.reward column (teleoperation)
    dones: np.ndarray          # (N,) bool, last frame of each episode
    episode_index: np.ndarray  # (N,)
    frame_index: np.ndarray    # (N,)
    info: dict                 # meta/info.json; info["steerlab"] holds meta/steerlab.json (in memory only)
    stats: dict
    episodes: list[dict]
    tasks: list[str] = field(default_factory=list)  # task strings, position = task_index
    task_index: np.ndarray | None = None             # (N,) per frame
    images: dict = field(default_factory=dict)       # 'observation.images.<cam>' -> (N, H, W, 3) uint8 (image/video)

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def task(self) -> str | None:
        """The dataset's task string when it has exactly one (the usual case), else None."""
        return self.tasks[0] if len(self.tasks) == 1 else None

    @property
    def extra(self) -> dict:
        """steerlab's collection metadata (env family, max_steps, quality...); {} for foreign datasets."""
        return self.info.get("steerlab", {})

    def episode_slices(self) -> list[slice]:
        return [slice(e["dataset_from_index"], e["dataset_to_index"]) for e in self.episodes]


# ---------------------------------------------------------------- statistics (LeRobot's definitions)

def compute_stats(x: np.ndarray) -> dict:
    """min/max/mean/std/count and the q01..q99 quantiles over axis 0 of one episode's (T, D) values.
    Like LeRobot, an episode with fewer than two frames gets its mean as every quantile."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    stats = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0),
             "count": np.array([x.shape[0]], np.int64)}
    for key, q in QUANTILES.items():
        stats[key] = np.quantile(x, q, axis=0) if x.shape[0] >= 2 else stats["mean"].copy()
    return stats


def aggregate_stats(per_episode: list[dict]) -> dict:
    """Dataset stats from per-episode stats, as LeRobot's `aggregate_feature_stats` does: exact min,
    max, mean and (pooled) std; quantiles are the count-weighted mean of the episodes' quantiles."""
    counts = np.array([s["count"][0] for s in per_episode], np.float64)[:, None]
    total = counts.sum()
    means = np.stack([s["mean"] for s in per_episode])
    mean = (means * counts).sum(0) / total
    var = ((np.stack([s["std"] for s in per_episode]) ** 2 + (means - mean) ** 2) * counts).sum(0) / total
    out = {"min": np.stack([s["min"] for s in per_episode]).min(0),
           "max": np.stack([s["max"] for s in per_episode]).max(0),
           "mean": mean, "std": np.sqrt(var), "count": np.array([int(total)], np.int64)}
    for key in QUANTILES:
        out[key] = (np.stack([s[key] for s in per_episode]) * counts).sum(0) / total
    return out


def _stats_to_json(stats: dict) -> dict:
    return {k: [int(v) for v in a] if k == "count" else np.asarray(a, np.float64).tolist() for k, a in stats.items()}


# ---------------------------------------------------------------- writing

def _fixed_list(arr: np.ndarray) -> pa.FixedSizeListArray:
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    typ = pa.list_(pa.field("element", pa.float32()), arr.shape[1])  # element name as `datasets` writes it
    return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), type=typ)


def _hf_features(features: dict) -> dict:
    """The `huggingface` schema metadata LeRobot's writer (via `datasets`) stores in each data file."""
    out = {}
    for name, ft in features.items():
        value = {"dtype": ft["dtype"], "_type": "Value"}
        out[name] = value if ft["shape"] == [1] else {"feature": value, "length": ft["shape"][0], "_type": "List"}
    return out


def _tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet as pandas writes `DataFrame({"task_index": ...}, index=Index(tasks, name="task"))`:
    LeRobot reads it with pandas and looks the task string up as the *index*, so the pandas metadata
    naming `task` as the index column is what makes `dataset[i]["task"]` a string rather than a number."""
    table = pa.table({"task_index": pa.array(np.arange(len(tasks), dtype=np.int64)), "task": pa.array(tasks)})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    return table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})


def write_dataset(root: str | Path, episodes: list[Episode], task: str, fps: int = 80,
                  robot_type: str | None = "sawyer", extra_info: dict | None = None, overwrite: bool = False,
                  video: bool = False) -> Path:
    """Write `episodes` (all of task `task`) as a LeRobotDataset v3 folder. The folder is built beside
    `root` and renamed into place; an existing `root` is refused unless `overwrite=True` (then it is
    replaced whole, never left half-overwritten). Camera frames become image features (PNG in the
    parquet, exact), or with `video=True` video features (one mp4 per camera, lossy; data/videos.py)."""
    if not episodes:
        raise ValueError("cannot write a dataset with no episodes")
    with_reward = episodes[0].rewards is not None
    if any((e.rewards is not None) != with_reward for e in episodes):
        raise ValueError("either every episode has rewards or none has")
    root = Path(root)
    lengths = [len(e.actions) for e in episodes]
    n = sum(lengths)
    starts = np.cumsum([0] + lengths)

    # per-frame columns, per episode, in LeRobot's feature order (user features, then bookkeeping)
    def columns(i: int, e: Episode) -> dict[str, np.ndarray]:
        t = lengths[i]
        frame = np.arange(t, dtype=np.int64)
        cols = {"observation.state": e.observations.astype(np.float32), "action": e.actions.astype(np.float32)}
        if with_reward:
            cols["next.reward"] = e.rewards.astype(np.float32)
            cols["next.done"] = frame == t - 1
        cols.update({"timestamp": (frame / fps).astype(np.float32), "frame_index": frame,
                     "episode_index": np.full(t, i, np.int64), "index": frame + starts[i],
                     "task_index": np.zeros(t, np.int64)})
        return cols

    per_ep = [columns(i, e) for i, e in enumerate(episodes)]
    names = list(per_ep[0])
    full = {k: np.concatenate([c[k] for c in per_ep]) for k in names}
    dtypes = {k: "bool" if full[k].dtype == bool else str(full[k].dtype) for k in names}
    features = {k: {"dtype": dtypes[k], "shape": [full[k].shape[1]] if full[k].ndim == 2 else [1], "names": None}
                for k in names}
    ep_stats = [{k: compute_stats(c[k]) for k in names} for c in per_ep]
    stats = {k: aggregate_stats([s[k] for s in ep_stats]) for k in names}

    frames = pa.table({k: _fixed_list(v) if v.ndim == 2 else pa.array(v) for k, v in full.items()})
    hf = _hf_features(features)
    cams = camera_frames(episodes)  # camera frames: PNG-in-parquet image features, or mp4 video features
    for key, per_ep in cams.items():
        pixels = np.concatenate(per_ep)
        if video:
            videos.check_video_size(*pixels.shape[1:3])
            features[key] = videos.video_feature(pixels)
        else:
            frames = frames.append_column(key, image_column(pixels))
            features[key], hf[key] = image_feature(pixels), {"_type": "Image"}
        for f, s in zip(per_ep, ep_stats):
            s[key] = image_stats(f)
        stats[key] = image_stats(pixels)
    frames = frames.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": hf}})})

    ep_cols = {
        "episode_index": pa.array(np.arange(len(episodes), dtype=np.int64)),
        "tasks": pa.array([[task]] * len(episodes), pa.list_(pa.field("element", pa.string()))),
        "length": pa.array(np.asarray(lengths, np.int64)),
        "data/chunk_index": pa.array(np.zeros(len(episodes), np.int64)),
        "data/file_index": pa.array(np.zeros(len(episodes), np.int64)),
        "dataset_from_index": pa.array(starts[:-1].astype(np.int64)),
        "dataset_to_index": pa.array(starts[1:].astype(np.int64)),
    }
    for key in cams if video else ():  # where each episode lies in its camera's mp4 (LeRobot's columns)
        ep_cols.update({k: pa.array(v) for k, v in videos.episode_video_columns(key, lengths, fps).items()})
    for k in ep_stats[0]:  # the frame features, then the cameras' (3, 1, 1) image stats (nested lists)
        for stat in ep_stats[0][k]:
            typ = pa.list_(pa.field("element", pa.int64() if stat == "count" else pa.float64()))
            vals = [np.asarray(s[k][stat]).tolist() for s in ep_stats]
            ep_cols[f"stats/{k}/{stat}"] = pa.array(vals, typ) if np.ndim(ep_stats[0][k][stat]) <= 1 else pa.array(vals)
    ep_cols["meta/episodes/chunk_index"] = pa.array(np.zeros(len(episodes), np.int64))
    ep_cols["meta/episodes/file_index"] = pa.array(np.zeros(len(episodes), np.int64))
    # steerlab's own per-episode columns (LeRobot keeps unknown episode columns and ignores them)
    ep_cols["success"] = pa.array([bool(e.success) for e in episodes])
    ep_cols["meta_json"] = pa.array([json.dumps(e.meta, sort_keys=True, allow_nan=False) for e in episodes])

    info = {
        "codebase_version": CODEBASE_VERSION, "fps": fps, "features": features,
        "total_episodes": len(episodes), "total_frames": n, "total_tasks": 1,
        "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200,
        "data_path": DATA_PATH, "video_path": videos.VIDEO_PATH if video and cams else None,
        "robot_type": robot_type,
        "splits": {"train": f"0:{len(episodes)}"},
    }
    with atomic_dir(root, replace=overwrite) as tmp:
        data_file = tmp / DATA_PATH.format(chunk_index=0, file_index=0)
        data_file.parent.mkdir(parents=True)
        pq.write_table(frames, data_file)
        for key in cams if video else ():
            mp4 = tmp / videos.VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
            features[key]["info"] = videos.encode_video(mp4, cams[key], fps)
        ep_file = tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_file.parent.mkdir(parents=True)
        pq.write_table(pa.table(ep_cols), ep_file)
        pq.write_table(_tasks_table([task]), tmp / "meta" / "tasks.parquet")
        atomic_write_json(tmp / "meta" / "info.json", info)
        atomic_write_json(tmp / "meta" / "stats.json", {k: _stats_to_json(v) for k, v in stats.items()})
        atomic_write_json(tmp / STEERLAB_META, dict(extra_info or {}, task=task))
    return root


# ---------------------------------------------------------------- reading

def _column_matrix(table: pa.Table, name: str, root: Path) -> np.ndarray:
    col = table.column(name).combine_chunks()
    if not pa.types.is_fixed_size_list(col.type) and not pa.types.is_list(col.type):
        raise DatasetError(f"{root}: column {name!r} must be a list of floats, got {col.type}")
    values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    width = col.type.list_size if pa.types.is_fixed_size_list(col.type) else len(col[0])
    if values.size != len(col) * width:
        raise DatasetError(f"{root}: column {name!r} has rows of unequal length")
    return values.reshape(len(col), width)


def _read_tasks(root: Path) -> list[str]:
    """Task strings ordered by task_index. LeRobot stores them as the pandas index (a column named by
    the pandas metadata, normally `task`); older steerlab datasets stored a plain `task` column."""
    path = root / "meta" / "tasks.parquet"
    if not path.is_file():
        raise DatasetError(f"{root}: missing meta/tasks.parquet")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DatasetError(f"{root}: unreadable meta/tasks.parquet ({err})") from err
    name = "task"
    meta = (table.schema.metadata or {}).get(b"pandas")
    if name not in table.column_names and meta:
        index_cols = [c for c in json.loads(meta).get("index_columns", []) if isinstance(c, str)]
        name = index_cols[0] if index_cols else name
    if name not in table.column_names or "task_index" not in table.column_names:
        raise DatasetError(f"{root}: meta/tasks.parquet needs the task strings and a task_index column, "
                           f"has {table.column_names}")
    order = np.argsort(table.column("task_index").to_numpy())
    tasks = [str(t) for t in np.asarray(table.column(name).to_pylist(), dtype=object)[order]]
    if sorted(table.column("task_index").to_pylist()) != list(range(len(tasks))):
        raise DatasetError(f"{root}: meta/tasks.parquet task_index is not 0..{len(tasks) - 1}")
    return tasks


def read_dataset(root: str | Path) -> Dataset:
    """Read a LeRobotDataset v3 folder with state observations, written by `write_dataset` or by LeRobot."""
    root = Path(root)
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise DatasetError(f"{root}: not a dataset (missing meta/info.json)")
    try:
        info = json.loads(info_path.read_text())
        stats = json.loads((root / "meta" / "stats.json").read_text())
        extra_path = root / STEERLAB_META
        if extra_path.is_file():  # older steerlab datasets kept this under info["steerlab"]
            info["steerlab"] = json.loads(extra_path.read_text())
    except (json.JSONDecodeError, FileNotFoundError) as err:
        raise DatasetError(f"{root}: meta/info.json, stats.json or steerlab.json is missing or not valid JSON "
                           f"({err})") from err
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
    tasks = _read_tasks(root)
    obs = _column_matrix(table, "observation.state", root)
    act = _column_matrix(table, "action", root)
    if not (np.isfinite(obs).all() and np.isfinite(act).all()):
        raise DatasetError(f"{root}: observation.state or action contains NaN/inf")
    ep_idx = table.column("episode_index").to_numpy()
    order = np.lexsort((table.column("frame_index").to_numpy(), ep_idx))
    obs, act, ep_idx = obs[order], act[order], ep_idx[order]
    frame_idx = table.column("frame_index").to_numpy()[order]
    task_idx = table.column("task_index").to_numpy()[order]
    if len(task_idx) and (task_idx.min() < 0 or task_idx.max() >= len(tasks)):
        raise DatasetError(f"{root}: task_index {int(task_idx.max())} has no entry in meta/tasks.parquet")
    if ep_table is not None:
        keep = [c for c in ep_table.column_names if not c.startswith("stats/")]
        episodes = ep_table.select(keep).to_pylist()
        for e in episodes:
            e["meta"] = json.loads(e.pop("meta_json", None) or "{}")
        episodes.sort(key=lambda e: e["dataset_from_index"])
    else:  # derive episode ranges from the frame table
        bounds = np.flatnonzero(np.diff(ep_idx)) + 1
        starts, ends = np.r_[0, bounds], np.r_[bounds, len(ep_idx)]
        episodes = [{"episode_index": int(ep_idx[s]), "length": int(e - s), "dataset_from_index": int(s),
                     "dataset_to_index": int(e)} for s, e in zip(starts, ends)]
    total = sum(e["length"] for e in episodes)
    if total != len(act):
        raise DatasetError(f"{root}: episode lengths sum to {total} but the data has {len(act)} frames")
    dones = np.zeros(len(act), bool)
    dones[[e["dataset_to_index"] - 1 for e in episodes]] = True
    rewards = None
    if "next.reward" in table.column_names:
        rewards = table.column("next.reward").to_numpy()[order].astype(np.float32)
    if "next.done" in table.column_names:
        dones = table.column("next.done").to_numpy(zero_copy_only=False)[order].astype(bool)
    images = read_image_features(table, info, order)
    timestamps = table.column("timestamp").to_numpy()[order]
    for k in videos.video_keys(info):  # decoded from the mp4s (PyAV: the `video` extra)
        videos.import_av()  # without it, one line naming the fix (a UserError, not a broken dataset)
        try:
            images[k] = videos.read_video_feature(root, info, k, episodes, ep_idx, timestamps)
        except ValueError as err:
            raise DatasetError(f"{root}: {err}") from err
    return Dataset(
        observations=obs, actions=act, rewards=rewards, dones=dones,
        episode_index=ep_idx, frame_index=frame_idx, info=info, stats=stats, episodes=episodes,
        tasks=tasks, task_index=task_idx, images=images,
    )


def chunk_indices(ds: Dataset, horizon: int) -> np.ndarray:
    """(N, horizon) frame indices of the action chunk starting at each frame; chunks running past the
    end of their episode repeat its last action (the robot holds its final command)."""
    idx = np.empty((len(ds.actions), horizon), np.int64)
    for sl in ds.episode_slices():
        frames = np.arange(sl.start, sl.stop)
        idx[sl] = np.minimum(frames[:, None] + np.arange(horizon)[None], sl.stop - 1)
    return idx
