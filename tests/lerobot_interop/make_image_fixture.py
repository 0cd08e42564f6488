"""How tests/fixtures/lerobot-v3/with-images was written, by LeRobot 0.6.1 itself (`.venv-lerobot`):

    .venv-lerobot/bin/python tests/lerobot_interop/make_image_fixture.py tests/fixtures/lerobot-v3/with-images

tests/data/test_lerobot_format.py regenerates the same frames from the same generator to check what steerlab reads.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import offline_hf  # noqa: F401  (before lerobot; this folder is on the path as the script's own)
from lerobot.datasets import LeRobotDataset


def main(root: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    features = {"observation.images.corner2": {"dtype": "image", "shape": (12, 16, 3),
                                               "names": ["height", "width", "channels"]},
                "observation.state": {"dtype": "float32", "shape": (4,), "names": None},
                "action": {"dtype": "float32", "shape": (4,), "names": None}}
    ds = LeRobotDataset.create("local/steerlab-images", fps=10, root=root, features=features, use_videos=False)
    rng = np.random.default_rng(0)
    for _ in range(2):
        for _ in range(5):
            ds.add_frame({"observation.images.corner2": rng.integers(0, 256, (12, 16, 3), dtype=np.uint8),
                          "observation.state": rng.standard_normal(4).astype(np.float32),
                          "action": rng.uniform(-1, 1, 4).astype(np.float32), "task": "reach-v3"})
        ds.save_episode()
    ds.finalize()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
