"""Camera frames in LeRobot v3 datasets: `observation.images.<camera>` features of dtype "image".

As LeRobot (through Hugging Face `datasets`' Image feature) stores them: one PNG per frame, in a
struct<bytes: binary, path: string> parquet column (path null: the bytes are embedded); info.json
lists the feature with shape [H, W, 3] and names [height, width, channels]; stats.json holds per-channel
statistics of the pixels scaled to [0, 1], shaped (3, 1, 1) as LeRobot computes them. Frames are uint8
(H, W, 3) on both sides (what environments give; steerlab.core.observations converts for policies).
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa

from steerlab.core.observations import IMAGE_PREFIX, image_key

IMAGE_STRUCT = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}


def encode_png(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.uint8)


def image_column(frames: np.ndarray) -> pa.StructArray:
    return pa.array([{"bytes": encode_png(f), "path": None} for f in frames], IMAGE_STRUCT)


def camera_frames(episodes) -> dict[str, list[np.ndarray]]:
    """'observation.images.<cam>' -> each episode's (T, H, W, 3) frames, cameras sorted by name; every
    episode needs one frame per action for every camera of the first."""
    out = {}
    for cam in sorted(episodes[0].images or {}):
        if any(e.images is None or cam not in e.images or len(e.images[cam]) != len(e.actions) for e in episodes):
            raise ValueError(f"every episode needs one frame per action for camera {cam!r}")
        out[image_key(cam)] = [np.asarray(e.images[cam], np.uint8) for e in episodes]
    return out


def image_feature(frames: np.ndarray) -> dict:
    h, w, c = frames.shape[1:]
    return {"dtype": "image", "shape": [int(h), int(w), int(c)], "names": ["height", "width", "channels"]}


def image_stats(frames: np.ndarray) -> dict:
    """LeRobot's image stats: per channel over all pixels of all frames, in [0, 1], each shaped (3, 1, 1)."""
    x = frames.reshape(-1, frames.shape[-1]).astype(np.float64) / 255.0
    out = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}
    out.update({k: np.quantile(x, q, axis=0) for k, q in QUANTILES.items()})
    stats = {k: v.reshape(-1, 1, 1) for k, v in out.items()}
    stats["count"] = np.array([len(frames)], np.int64)
    return stats


def image_keys(info: dict) -> list[str]:
    return [k for k, ft in info.get("features", {}).items()
            if k.startswith(IMAGE_PREFIX) and ft.get("dtype") == "image"]


def read_image_column(table: pa.Table, key: str, order: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 frames of `key`, in `order`."""
    col = table.column(key).combine_chunks()
    data = col.field("bytes").to_pylist() if pa.types.is_struct(col.type) else col.to_pylist()
    return np.stack([decode_png(data[i]) for i in order])


def read_image_features(table: pa.Table, info: dict, order: np.ndarray) -> dict[str, np.ndarray]:
    return {k: read_image_column(table, k, order) for k in image_keys(info) if k in table.column_names}
