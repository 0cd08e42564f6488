"""Camera frames as LeRobot v3 video features (mp4): steerlab writes LeRobot 0.6.1's layout and reads what
LeRobot wrote (tests/fixtures/lerobot-v3/with-video, written by tests/lerobot_interop/make_video_fixture.py).
Encoding is lossy (yuv420p, crf 30): decoded frames are compared to the originals within a tolerance. Tests
that encode or decode need PyAV (the `video` extra) and are skipped without it; the missing-PyAV errors are not.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from steerlab.cli import main
from steerlab.core.errors import UserError
from steerlab.data.dataset import Episode, read_dataset, write_dataset

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "lerobot-v3" / "with-video"
KEY = "observation.images.corner2"
SHAPE = (32, 48, 3)
# lossy-decode tolerance on smooth frames, in uint8 levels: mean |decoded - original| over all pixels; measured
# 3.05 (steerlab, PyAV 18) and 2.82 (the LeRobot fixture) on these frames; swapped channels give 39.5, the
# neighbouring frame 9.1 or more
MEAN_ABS_TOL = 6.0


def smooth_frame(i: int) -> np.ndarray:
    """make_video_fixture.py's frame i (the same function): red and green ramps shifted by i, blue per frame."""
    h, w, _ = SHAPE
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 4 + i * 12) % 256, (y * 6 + i * 6) % 256, np.full((h, w), 40 + 15 * i)],
                    -1).astype(np.uint8)


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def video_episodes(lengths=(5, 1, 7), seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    eps, k = [], 0
    for n in lengths:  # a one-frame episode: its from/to timestamps still bracket exactly one frame
        frames = np.stack([smooth_frame(k + j) for j in range(n)])
        k += n
        eps.append(Episode(rng.standard_normal((n, 4)).astype(np.float32), rng.uniform(-1, 1, (n, 4)).astype(np.float32),
                           None, success=False, images={"corner2": frames}))
    return eps


def hide_av(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError, as without the extra


# ----------------------------------------------------------------- without PyAV: one line naming the fix

def test_collect_video_without_pyav_is_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys):
    hide_av(monkeypatch)
    out = tmp_path / "ds"
    assert main(["collect", "--task", "push-wall-v3", "--episodes", "1", "--out", str(out), "--camera", "corner2",
                 "--video"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'steerlab[video]'" in err and err.count("\n") == 1
    assert not out.exists()


def test_reading_a_video_dataset_without_pyav_names_the_fix(monkeypatch):
    hide_av(monkeypatch)
    with pytest.raises(UserError, match=r"pip install 'steerlab\[video\]'"):
        read_dataset(FIXTURE)


def test_collect_video_refuses_bad_options_before_writing(tmp_path, capsys):
    out = tmp_path / "ds"
    for extra, why in ((["--video"], "give --camera"),
                       (["--camera", "corner2", "--image-size", "33", "48", "--video"], "even sides of at least 32"),
                       (["--camera", "corner2", "--image-size", "24", "24", "--video"], "even sides of at least 32")):
        assert main(["collect", "--task", "push-wall-v3", "--episodes", "1", "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1
    assert not out.exists()


# ----------------------------------------------------------------- with PyAV

def test_steerlab_reads_a_lerobot_written_video_dataset():
    pytest.importorskip("av", reason="video features need PyAV (pip install 'steerlab[video]')")
    ds = read_dataset(FIXTURE)
    images = ds.images[KEY]
    assert images.dtype == np.uint8 and images.shape == (10, *SHAPE)  # HWC uint8, like image features
    want = np.stack([smooth_frame(i) for i in range(10)])
    assert mean_abs(images, want) < MEAN_ABS_TOL
    for i in range(10):  # each frame is its own, not a neighbour (neighbours differ by > 9 levels on average)
        errs = [mean_abs(images[i], want[j]) for j in range(10)]
        assert int(np.argmin(errs)) == i
    rng = np.random.default_rng(0)  # the generator's draws, in its order: state, then action, per frame
    for i in range(10):
        np.testing.assert_array_equal(ds.observations[i], rng.standard_normal(4).astype(np.float32))
        np.testing.assert_array_equal(ds.actions[i], rng.uniform(-1, 1, 4).astype(np.float32))
    assert ds.episode_index.tolist() == [0] * 5 + [1] * 5 and ds.task == "reach-v3"


def test_written_video_layout_matches_lerobots_and_reads_back(tmp_path):
    pytest.importorskip("av", reason="video features need PyAV (pip install 'steerlab[video]')")
    eps = video_episodes()
    root = write_dataset(tmp_path / "ds", eps, "reach-v3", fps=10, robot_type=None, video=True)
    mp4 = "videos/observation.images.corner2/chunk-000/file-000.mp4"
    assert (root / mp4).is_file() and (FIXTURE / mp4).is_file()
    theirs = json.loads((FIXTURE / "meta" / "info.json").read_text())
    ours = json.loads((root / "meta" / "info.json").read_text())
    assert ours["video_path"] == theirs["video_path"]
    assert ours["features"][KEY] == theirs["features"][KEY]  # dtype, shape, names and every video.* entry
    # no parquet column for a video feature; the episode table says where each episode lies in the mp4
    assert pq.read_schema(root / "data/chunk-000/file-000.parquet").names == \
        pq.read_schema(FIXTURE / "data/chunk-000/file-000.parquet").names
    ep_file = "meta/episodes/chunk-000/file-000.parquet"
    assert {(f.name, str(f.type)) for f in pq.read_schema(FIXTURE / ep_file)} <= \
        {(f.name, str(f.type)) for f in pq.read_schema(root / ep_file)}
    table = pq.read_table(root / ep_file).to_pylist()
    assert [e[f"videos/{KEY}/from_timestamp"] for e in table] == [0.0, 0.5, 0.6]
    assert [e[f"videos/{KEY}/to_timestamp"] for e in table] == [0.5, 0.6, 1.3]
    ds = read_dataset(root)
    want = np.concatenate([e.images["corner2"] for e in eps])
    assert ds.images[KEY].shape == want.shape and mean_abs(ds.images[KEY], want) < MEAN_ABS_TOL
    np.testing.assert_array_equal(ds.observations, np.concatenate([e.observations for e in eps]))
    stats = json.loads((root / "meta" / "stats.json").read_text())[KEY]
    assert np.asarray(stats["mean"]).shape == (3, 1, 1)  # the frames' stats, as for image features


def test_collect_video_cli_then_pretrain(tmp_path, capsys):
    pytest.importorskip("av", reason="video features need PyAV (pip install 'steerlab[video]')")
    from steerlab.core.checkpoint import load_policy
    from steerlab.data.collect import collect_demos

    out = tmp_path / "ds"
    assert main(["collect", "--task", "push-wall-v3", "--episodes", "2", "--quality", "expert", "--max-steps", "6",
                 "--camera", "corner2", "--image-size", "32", "32", "--video", "--out", str(out)]) == 0
    ds = read_dataset(out)
    assert json.loads((out / "meta" / "info.json").read_text())["features"][KEY]["dtype"] == "video"
    assert ds.extra["video"] is True and not list((out / "data").rglob("*.png"))
    raw = collect_demos("push-wall-v3", 2, "expert", seed=0, max_steps=6, progress=False, cameras=["corner2"],
                        image_size=(32, 32))
    want = np.concatenate([e.images["corner2"] for e in raw])
    assert ds.images[KEY].shape == want.shape and mean_abs(ds.images[KEY], want) < MEAN_ABS_TOL
    assert main(["pretrain", "--dataset", str(out), "--out", str(tmp_path / "p"), "--steps", "2",
                 "--batch-size", "4"]) == 0
    policy = load_policy(tmp_path / "p")
    assert policy.config.cameras == ["corner2"] and policy.config.image_size == [32, 32]


def test_video_stats_are_lerobots_for_the_same_frames(tmp_path):
    """The fixture's frames written by steerlab: min/max/mean/std of the camera stats equal LeRobot's (computed,
    like LeRobot, from the frames before encoding; LeRobot's quantiles come from histograms and differ)."""
    pytest.importorskip("av", reason="video features need PyAV (pip install 'steerlab[video]')")
    rng = np.random.default_rng(0)
    eps = []
    for e in range(2):
        rows = [(rng.standard_normal(4).astype(np.float32), rng.uniform(-1, 1, 4).astype(np.float32)) for _ in range(5)]
        eps.append(Episode(np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]), None, success=False,
                           images={"corner2": np.stack([smooth_frame(5 * e + t) for t in range(5)])}))
    root = write_dataset(tmp_path / "ds", eps, "reach-v3", fps=10, robot_type=None, video=True)
    ours = json.loads((root / "meta" / "stats.json").read_text())[KEY]
    theirs = json.loads((FIXTURE / "meta" / "stats.json").read_text())[KEY]
    for k in ("min", "max", "mean", "std", "count"):
        np.testing.assert_allclose(ours[k], theirs[k], atol=1e-4, err_msg=k)


def test_h264_where_svtav1_is_missing_and_one_line_where_both_are(tmp_path, monkeypatch):
    pytest.importorskip("av", reason="video features need PyAV (pip install 'steerlab[video]')")
    from steerlab.data import videos

    monkeypatch.setattr(videos, "CODECS", ("no-such-encoder", "h264"))
    eps = video_episodes((4, 3))
    root = write_dataset(tmp_path / "h264", eps, "reach-v3", fps=10, video=True)
    info = json.loads((root / "meta" / "info.json").read_text())["features"][KEY]["info"]
    assert info["video.codec"] == "h264" and info["video.preset"] is None and info["video.pix_fmt"] == "yuv420p"
    want = np.concatenate([e.images["corner2"] for e in eps])
    assert mean_abs(read_dataset(root).images[KEY], want) < MEAN_ABS_TOL
    monkeypatch.setattr(videos, "CODECS", ("no-such-encoder",))
    with pytest.raises(UserError, match="none of the encoders no-such-encoder"):
        write_dataset(tmp_path / "none", eps, "reach-v3", fps=10, video=True)
    assert not (tmp_path / "none").exists()
