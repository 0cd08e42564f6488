"""Image classification data for personalization: sklearn's bundled digits, or local MNIST IDX files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise ValueError(f"{path} is not an IDX file")
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4: 4 + 4 * dims])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: IDX header says {shape} but the file holds {arr.size} values")
    return arr.reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"MNIST file {stem}[.gz] not found in {root}")


def load_digits_split(mnist_dir: str | None = None, test_fraction: float = 0.25, seed: int = 0):
    """((x_train, y_train), (x_test, y_test)) with x as float tensors (N, 1, side, side) in [0, 1]."""
    if mnist_dir:
        root = Path(mnist_dir)
        xs = {s: _read_idx(_find(root, f"{s}-images-idx3-ubyte")) for s in ("train", "t10k")}
        ys = {s: _read_idx(_find(root, f"{s}-labels-idx1-ubyte")) for s in ("train", "t10k")}

        def prep(x):  # 28×28 -> 14×14 by 2×2 average pooling: keeps the CPU budget small
            t = torch.as_tensor(x, dtype=torch.float32)[:, None] / 255.0
            return torch.nn.functional.avg_pool2d(t, 2)

        return ((prep(xs["train"]), torch.as_tensor(ys["train"], dtype=torch.long)),
                (prep(xs["t10k"]), torch.as_tensor(ys["t10k"], dtype=torch.long)))
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.as_tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(x) * test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    return (x[train], y[train]), (x[test], y[test])
