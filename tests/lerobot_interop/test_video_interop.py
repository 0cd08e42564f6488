"""Video features (mp4) both ways with LeRobot 0.6.1 (its pyav decoder: torchcodec does not load here).

LeRobot decodes steerlab's mp4s to the very frames steerlab decodes, and steerlab decodes LeRobot's own video
fixture to the very frames LeRobot does (same PyAV, same rgb24 conversion: equal to float precision). How close
those are to the recorded frames (the encoding is lossy; tests/data/test_video_dataset.py) is checked here only
as far as each decoded frame being nearest to its own recorded frame, not to another episode's or a neighbour's.
"""

from pathlib import Path

import numpy as np
import offline_hf  # noqa: F401  (before lerobot)
import pytest

from steerlab.data.dataset import Episode, read_dataset, write_dataset

pytestmark = pytest.mark.lerobot
pytest.importorskip("lerobot", reason="needs the lerobot extra (Python >= 3.12): `make test-lerobot`")

from lerobot.datasets import LeRobotDataset  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "lerobot-v3" / "with-video"
KEY = "observation.images.corner2"


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def assert_same_frames(lerobot_ds, ours, indices, recorded):
    """LeRobot's frame i == steerlab's frame i, and both are nearest to recorded frame i (of all recorded)."""
    for i in range(len(recorded)):
        errs = [mean_abs(ours.images[KEY][i], r) for r in recorded]
        assert int(np.argmin(errs)) == i and errs[i] < 6.0
    for i in indices:
        item = lerobot_ds[i]
        frame = item[KEY].numpy()  # LeRobot: float CHW in [0, 1]
        assert frame.shape == (3, *ours.images[KEY].shape[1:3])
        np.testing.assert_allclose(frame, ours.images[KEY][i].transpose(2, 0, 1) / 255.0, atol=1e-6)
        np.testing.assert_array_equal(item["observation.state"].numpy(), ours.observations[i])
        assert int(item["episode_index"]) == int(ours.episode_index[i])


def test_lerobot_reads_steerlab_video_features(tmp_path):
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:32, 0:48]
    eps, k = [], 0
    for n in (6, 1, 5):  # smooth moving frames, all different; a one-frame episode in the middle
        frames = np.stack([np.stack([(x * 5 + t * 9) % 256, (y * 7) % 256, np.full_like(x, 15 * t)], -1)
                           for t in range(k, k + n)]).astype(np.uint8)
        k += n
        eps.append(Episode(rng.standard_normal((n, 4)).astype(np.float32),
                           rng.uniform(-1, 1, (n, 4)).astype(np.float32), rng.standard_normal(n).astype(np.float32),
                           success=False, images={"corner2": frames}))
    root = write_dataset(tmp_path / "ds", eps, "reach-v3", fps=10, extra_info={"env": "metaworld"}, video=True)
    ds = LeRobotDataset("local/steerlab-video", root=root, video_backend="pyav")
    assert ds.meta.features[KEY]["dtype"] == "video" and tuple(ds.meta.features[KEY]["shape"]) == (32, 48, 3)
    assert ds.meta.video_keys == [KEY] and ds.num_frames == 12 and ds.num_episodes == 3
    assert ds[0]["task"] == "reach-v3"
    assert_same_frames(ds, read_dataset(root), range(12), np.concatenate([e.images["corner2"] for e in eps]))


def test_steerlab_decodes_lerobots_video_fixture_as_lerobot_does():
    ds = LeRobotDataset("local/steerlab-video", root=FIXTURE, video_backend="pyav")
    ours = read_dataset(FIXTURE)
    assert ours.images[KEY].shape == (10, 32, 48, 3)
    y, x = np.mgrid[0:32, 0:48]  # make_video_fixture.py's frames
    recorded = np.stack([np.stack([(x * 4 + i * 12) % 256, (y * 6 + i * 6) % 256, np.full_like(x, 40 + 15 * i)], -1)
                         for i in range(10)]).astype(np.uint8)
    assert_same_frames(ds, ours, range(10), recorded)


def test_lerobot_reads_steerlab_video_at_the_collect_rate(tmp_path):
    """fps 80 (Meta-World's, collect's default): LeRobot finds every frame within its 1e-4 s tolerance."""
    rng = np.random.default_rng(6)
    y, x = np.mgrid[0:32, 0:32]
    frames = np.stack([np.stack([(x * 3 + y * 2) % 256, np.full_like(x, 6 * t), np.full_like(x, 100)], -1)
                       for t in range(40)]).astype(np.uint8)  # green (most of the luma): 6 levels a frame
    eps = [Episode(rng.standard_normal((20, 3)).astype(np.float32), rng.standard_normal((20, 2)).astype(np.float32),
                   None, success=True, images={"corner2": frames[i * 20:(i + 1) * 20]}) for i in range(2)]
    root = write_dataset(tmp_path / "ds", eps, "reach-v3", fps=80, video=True)
    ds = LeRobotDataset("local/steerlab-video-80", root=root, video_backend="pyav")
    assert_same_frames(ds, read_dataset(root), (0, 19, 20, 21, 39), frames)
