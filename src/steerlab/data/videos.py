"""Camera frames as LeRobot v3 *video* features: `observation.images.<camera>` of dtype "video".

As LeRobot 0.6.1 writes them (lerobot/datasets/video_utils.py, dataset_writer.py):

    <root>/videos/<key>/chunk-000/file-000.mp4   one mp4 per camera; the episodes follow each other in it
    info.json  features[<key>] = {"dtype": "video", "shape": [H, W, 3], "names": [...], "info": {video.*}}
               video_path = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    episodes   videos/<key>/chunk_index, file_index, from_timestamp, to_timestamp (seconds into the mp4)

No parquet column: frame t of an episode is the mp4's frame at from_timestamp + timestamp (pts i/fps here, so
the match is exact; LeRobot accepts 1e-4 s). The encoder is LeRobot's default: SVT-AV1 (`libsvtav1`, preset
12, crf 30, GOP 2, yuv420p), or h264 where an FFmpeg build lacks SVT-AV1. yuv420p halves the colour
resolution and crf 30 is lossy: what reads back is close to the frames, not equal (image features are exact).
Stats are the frames' (as for image features). PyAV (`av`) is an optional extra: `pip install 'steerlab[video]'`.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from steerlab.core.errors import UserError
from steerlab.core.observations import IMAGE_PREFIX

VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
CODECS = ("libsvtav1", "h264")  # LeRobot's default first
PIX_FMT, GOP, CRF, SVTAV1_PRESET = "yuv420p", 2, 30, 12  # LeRobot 0.6.1's RGB encoder defaults
TOLERANCE_S = 1e-4  # LeRobot's default tolerance between a frame's timestamp and the decoded one
# SVT-AV1 as PyAV 15 bundles it (LeRobot 0.6.1's) dies with SIGFPE on frames narrower than ~28 pixels
MIN_SIDE = 32
INSTALL_HINT = "pip install 'steerlab[video]'"


def import_av():
    """PyAV, or one line naming the fix."""
    try:
        import av
    except ImportError as err:
        raise UserError(f"video features (mp4) need PyAV, which is not installed: {INSTALL_HINT}") from err
    return av


def pick_codec() -> str:
    av = import_av()
    for name in CODECS:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001  (PyAV raises UnknownCodecError/ValueError by version)
            continue
    raise UserError(f"this PyAV's FFmpeg has none of the encoders {', '.join(CODECS)}: {INSTALL_HINT} "
                    f"(PyPI's av wheels include both)")


def check_video_size(h: int, w: int) -> None:
    """yuv420p needs even sides; SVT-AV1 needs a width of ~32 or more."""
    if h % 2 or w % 2 or min(h, w) < MIN_SIDE:
        raise UserError(f"video frames need even sides of at least {MIN_SIDE} pixels, got {h}x{w}: pick another "
                        f"--image-size (e.g. 84 84) or leave out --video (image features take any size)")


def check_video_ready(h: int, w: int) -> str:
    """Everything `--video` needs, checked before anything is recorded; returns the codec."""
    check_video_size(h, w)
    return pick_codec()


def video_keys(info: dict) -> list[str]:
    return [k for k, ft in info.get("features", {}).items()
            if k.startswith(IMAGE_PREFIX) and ft.get("dtype") == "video"]


def video_feature(frames: np.ndarray) -> dict:
    h, w, c = frames.shape[1:]
    return {"dtype": "video", "shape": [int(h), int(w), int(c)], "names": ["height", "width", "channels"]}


def _codec_options(codec: str) -> dict[str, str]:
    opts = {"g": str(GOP), "crf": str(CRF)}
    if codec == "libsvtav1":
        opts.update({"preset": str(SVTAV1_PRESET), "svtav1-params": "fast-decode=0"})
    return opts


def encode_video(path: Path, episodes: list[np.ndarray], fps: int) -> dict:
    """Encode the episodes' (T, H, W, 3) uint8 frames one after the other into `path` (pts = frame number,
    time base 1/fps); returns the feature's `info` block as LeRobot records it."""
    av = import_av()
    codec = pick_codec()
    h, w = episodes[0].shape[1:3]
    check_video_size(h, w)
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its settings to stderr on every encoder; errors only
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=int(fps), options=_codec_options(codec))
        stream.pix_fmt, stream.width, stream.height = PIX_FMT, int(w), int(h)
        i = 0
        for frames in episodes:
            for f in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f, np.uint8), format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, int(fps))
                out.mux(stream.encode(frame))
                i += 1
        out.mux(stream.encode())
    with av.open(str(path)) as check:  # what the file says, as LeRobot's get_video_info reads it
        s = check.streams.video[0]
        name, pix_fmt = s.codec.canonical_name, s.pix_fmt
    return {"video.height": int(h), "video.width": int(w), "video.codec": name, "video.pix_fmt": pix_fmt,
            "video.fps": int(fps), "video.channels": 3, "has_audio": False, "video.g": GOP, "video.crf": CRF,
            "video.preset": SVTAV1_PRESET if codec == "libsvtav1" else None, "video.fast_decode": 0,
            "video.video_backend": "pyav", "video.extra_options": {}, "is_depth_map": False}


def episode_video_columns(key: str, lengths: list[int], fps: int) -> dict[str, list]:
    """The episode table's videos/<key>/... columns: every episode in chunk 0, file 0, back to back."""
    starts = np.cumsum([0] + list(lengths)) / float(fps)
    return {f"videos/{key}/chunk_index": [0] * len(lengths), f"videos/{key}/file_index": [0] * len(lengths),
            f"videos/{key}/from_timestamp": starts[:-1].tolist(), f"videos/{key}/to_timestamp": starts[1:].tolist()}


def decode_video(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All frames of `path`: (timestamps in seconds (N,), frames (N, H, W, 3) uint8)."""
    av = import_av()
    ts, frames = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            ts.append(float(frame.pts * stream.time_base))
            frames.append(frame.to_ndarray(format="rgb24"))
    if not frames:
        return np.zeros(0), np.zeros((0, 0, 0, 3), np.uint8)
    order = np.argsort(ts, kind="stable")
    return np.asarray(ts, np.float64)[order], np.stack(frames)[order]


def read_video_feature(root: Path, info: dict, key: str, episodes: list[dict], ep_index: np.ndarray,
                       timestamps: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 frames of the video feature `key` for frames (episode ep_index[i], timestamp
    timestamps[i]): each the mp4 frame at the episode's from_timestamp + timestamp, within TOLERANCE_S.
    Raises ValueError (the caller's DatasetError) naming the problem."""
    template = info.get("video_path") or VIDEO_PATH
    by_ep = {int(e["episode_index"]): e for e in episodes}
    cols = [f"videos/{key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp")]
    files: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    out = None
    for ep in np.unique(ep_index):
        e = by_ep.get(int(ep))
        if e is None or any(e.get(c) is None for c in cols):
            raise ValueError(f"episode {int(ep)} has no {cols[0].rsplit('/', 1)[0]}/... entry in meta/episodes")
        where = (int(e[cols[0]]), int(e[cols[1]]))
        if where not in files:
            path = root / template.format(video_key=key, chunk_index=where[0], file_index=where[1])
            if not path.is_file():
                raise ValueError(f"missing video file {path.relative_to(root)}")
            files[where] = decode_video(path)
        ts, frames = files[where]
        rows = np.flatnonzero(ep_index == ep)
        query = float(e[cols[2]]) + timestamps[rows].astype(np.float64)
        if not len(ts):
            raise ValueError(f"{key}: no frame decodes from its video file {where}")
        right = np.minimum(np.searchsorted(ts, query), len(ts) - 1)  # the nearest decoded frame, as LeRobot picks
        left = np.maximum(right - 1, 0)
        pos = np.where(np.abs(ts[left] - query) <= np.abs(ts[right] - query), left, right)
        off = np.abs(ts[pos] - query)
        if not (off < TOLERANCE_S).all():
            bad = rows[np.argmax(off)]
            raise ValueError(f"{key}: no video frame within {TOLERANCE_S} s of episode {int(ep)}'s timestamp "
                             f"{float(timestamps[bad]):.4f} (+ from_timestamp {float(e[cols[2]])})")
        if out is None:
            out = np.empty((len(ep_index), *frames.shape[1:]), np.uint8)
        out[rows] = frames[pos]
    return out if out is not None else np.zeros((0, 0, 0, 3), np.uint8)
