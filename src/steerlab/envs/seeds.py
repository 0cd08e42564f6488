"""Episode seeds: demonstrations, RL training and evaluation use disjoint ranges, for every env family,
so a policy is never evaluated on the exact initial states it was trained on."""

from __future__ import annotations

# 'mode': the base's evaluations that pick a run's sampler mode (train/finetune/mode.py), apart from the curve's;
# 'gate': the release gate's paired episodes (train/finetune/gate.py), apart from both and from the final evaluation
SEED_OFFSETS = {"demo": 0, "train": 1_000_000, "eval": 2_000_000, "mode": 3_000_000, "gate": 4_000_000}


def episode_seeds(split: str, seed: int, n: int) -> list[int]:
    """`n` episode seeds for `split` ('demo' | 'train' | 'eval' | 'mode' | 'gate') of run seed `seed`."""
    if split not in SEED_OFFSETS:
        raise ValueError(f"unknown seed split {split!r}; expected one of {sorted(SEED_OFFSETS)}")
    base = SEED_OFFSETS[split] + 10_000 * seed
    return [base + i for i in range(n)]
