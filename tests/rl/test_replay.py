import json

import numpy as np
import pytest
import torch

from steerlab.rl.replay import FIELDS, ReplayBuffer


def _add(rb, start, n):
    i = np.arange(start, start + n, dtype=np.float32)
    rb.add(np.stack([i, -i], 1), i[:, None], i, np.stack([i + 1, -i], 1), np.full(n, 0.99), (i % 2 == 0))


def test_batched_add_wraps_around():
    rb = ReplayBuffer(10, 2, 1, seed=0)
    _add(rb, 0, 4)
    assert len(rb) == 4 and rb.ptr == 4
    _add(rb, 4, 9)  # 13 in all: slots 0..2 hold 10..12, slots 3..9 hold 3..9
    assert len(rb) == 10 and rb.ptr == 3
    np.testing.assert_array_equal(rb.reward, [10, 11, 12, 3, 4, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(rb.obs[:, 1], -rb.reward)
    np.testing.assert_array_equal(rb.terminated, rb.reward % 2 == 0)
    _add(rb, 13, 25)  # more than the capacity at once: only the newest 10 survive, in ring order
    assert len(rb) == 10 and rb.ptr == (3 + 25) % 10
    assert sorted(rb.reward.tolist()) == list(range(28, 38))
    assert rb.reward[(rb.ptr - 1) % 10] == 37


def test_sample_dtypes_shapes_and_single_transition():
    rb = ReplayBuffer(8, 3, 2, seed=0)
    rb.add(np.ones(3), np.zeros(2), 1.0, np.ones(3), 0.9, 0.0)  # one unbatched transition
    rb.add(np.ones((2, 3)), np.zeros((2, 2)), np.ones((2, 1)), np.ones((2, 3)), [0.9, 0.9], [1, 0])
    s = rb.sample(5)
    assert set(s) == set(FIELDS)
    assert s["obs"].shape == (5, 3) and s["action"].shape == (5, 2) and s["reward"].shape == (5,)
    assert all(v.dtype == torch.float32 for v in s.values())
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(4, 3, 2).sample(1)


def test_add_validates_shapes_and_values():
    rb = ReplayBuffer(8, 3, 2)
    with pytest.raises(ValueError, match="action"):
        rb.add(np.ones((2, 3)), np.zeros((2, 3)), [0, 0], np.ones((2, 3)), [1, 1], [0, 0])
    with pytest.raises(ValueError, match="reward"):
        rb.add(np.ones((2, 3)), np.zeros((2, 2)), [0, 0, 0], np.ones((2, 3)), [1, 1], [0, 0])
    with pytest.raises(ValueError, match="NaN"):
        rb.add(np.ones((1, 3)), np.zeros((1, 2)), [np.nan], np.ones((1, 3)), [1], [0])
    assert len(rb) == 0


def test_save_load_resumes_identical_sampling(tmp_path):
    full = ReplayBuffer(10, 2, 1, seed=0)
    part = ReplayBuffer(10, 2, 1, seed=0)
    for rb in (full, part):
        _add(rb, 0, 7)
        rb.sample(4)  # advance the generator before saving
    part.save(tmp_path / "rb.npz")
    with np.load(tmp_path / "rb.npz", allow_pickle=False) as data:  # readable without pickle
        assert json.loads(str(data["meta"]))["size"] == 7
    resumed = ReplayBuffer(10, 2, 1, seed=5)
    _add(resumed, 100, 10)  # stale content must be replaced
    resumed.load(tmp_path / "rb.npz")
    assert (len(resumed), resumed.ptr) == (len(full), full.ptr)
    for rb in (full, resumed):
        _add(rb, 7, 6)  # wraps around
    for _ in range(3):
        s1, s2 = full.sample(6), resumed.sample(6)
        for k in FIELDS:
            assert torch.equal(s1[k], s2[k]), k
    for k in FIELDS:
        np.testing.assert_array_equal(getattr(full, k), getattr(resumed, k))
    assert not list(tmp_path.glob(".*.tmp"))  # the temp file was renamed into place


def test_load_rejects_corrupt_and_mismatched(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="corrupt"):
        ReplayBuffer(10, 2, 1).load(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="missing"):
        ReplayBuffer(10, 2, 1).load(tmp_path / "absent.npz")
    rb = ReplayBuffer(10, 2, 1)
    _add(rb, 0, 3)
    rb.save(tmp_path / "rb.npz")
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(20, 2, 1).load(tmp_path / "rb.npz")
    with pytest.raises(ValueError, match="obs_dim"):
        ReplayBuffer(10, 3, 1).load(tmp_path / "rb.npz")
