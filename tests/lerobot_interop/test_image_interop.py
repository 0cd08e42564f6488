"""Camera frames both ways with LeRobot 0.6.1: LeRobot reads steerlab's image features, as LeRobot's own."""

import numpy as np
import offline_hf  # noqa: F401  (before lerobot)
import pytest

from steerlab.data.dataset import Episode, read_dataset, write_dataset

pytestmark = pytest.mark.lerobot
pytest.importorskip("lerobot", reason="needs the lerobot extra (Python >= 3.12): `make test-lerobot`")

from lerobot.datasets import LeRobotDataset  # noqa: E402


def test_lerobot_reads_steerlab_camera_frames(tmp_path):
    rng = np.random.default_rng(3)
    eps = [Episode(rng.standard_normal((6, 4)).astype(np.float32), rng.uniform(-1, 1, (6, 4)).astype(np.float32),
                   rng.standard_normal(6).astype(np.float32), success=False,
                   images={"corner2": rng.integers(0, 256, (6, 10, 14, 3), dtype=np.uint8)}) for _ in range(2)]
    root = write_dataset(tmp_path / "ds", eps, "reach-v3", fps=10, extra_info={"env": "metaworld"})
    ds = LeRobotDataset("local/steerlab-cameras", root=root)
    ours = read_dataset(root)
    key = "observation.images.corner2"
    assert ds.meta.features[key]["dtype"] == "image" and tuple(ds.meta.features[key]["shape"]) == (10, 14, 3)
    for i in (0, 5, 11):
        frame = ds[i][key].numpy()  # LeRobot: float CHW in [0, 1]
        assert frame.shape == (3, 10, 14)
        np.testing.assert_allclose(frame, ours.images[key][i].transpose(2, 0, 1) / 255.0, atol=1e-6)
        np.testing.assert_array_equal(ds[i]["observation.state"].numpy(), ours.observations[i])
