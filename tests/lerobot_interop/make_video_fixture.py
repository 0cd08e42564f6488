"""How tests/fixtures/lerobot-v3/with-video was written, by LeRobot 0.6.1 itself (`.venv-lerobot`):

    .venv-lerobot/bin/python tests/lerobot_interop/make_video_fixture.py tests/fixtures/lerobot-v3/with-video

LeRobot's default encoder (libsvtav1, yuv420p, g=2, crf=30), one mp4 per camera holding both episodes.
The frames are smooth (a moving gradient, as a camera sees), so the lossy decode stays close to them;
tests/data/test_video_dataset.py regenerates them with the same function to check what steerlab reads.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import offline_hf  # noqa: F401  (before lerobot; this folder is on the path as the script's own)
from lerobot.datasets import LeRobotDataset

SHAPE = (32, 48, 3)


def smooth_frame(i: int) -> np.ndarray:
    """Frame i: red and green ramps shifted by i, blue constant per frame (the same in the test)."""
    h, w, _ = SHAPE
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 4 + i * 12) % 256, (y * 6 + i * 6) % 256, np.full((h, w), 40 + 15 * i)],
                    -1).astype(np.uint8)


def main(root: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    features = {"observation.images.corner2": {"dtype": "video", "shape": SHAPE,
                                               "names": ["height", "width", "channels"]},
                "observation.state": {"dtype": "float32", "shape": (4,), "names": None},
                "action": {"dtype": "float32", "shape": (4,), "names": None}}
    ds = LeRobotDataset.create("local/steerlab-video", fps=10, root=root, features=features, use_videos=True,
                               video_backend="pyav")
    rng = np.random.default_rng(0)
    i = 0
    for _ in range(2):
        for _ in range(5):
            ds.add_frame({"observation.images.corner2": smooth_frame(i),
                          "observation.state": rng.standard_normal(4).astype(np.float32),
                          "action": rng.uniform(-1, 1, 4).astype(np.float32), "task": "reach-v3"})
            i += 1
        ds.save_episode()
    ds.finalize()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
