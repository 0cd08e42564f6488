"""Evaluation statistics: success with a Wilson interval, end-effector smoothness."""

from __future__ import annotations

import math

import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (well behaved at 0 and 1, unlike Wald)."""
    if n <= 0:
        raise ValueError("wilson_interval needs n > 0")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at k = 0 or k = n the bound is exactly 0 or 1; say so rather than return 0.9999999
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def smoothness(hand_positions: np.ndarray, dt: float = 1.0) -> dict[str, float]:
    """Mean |velocity|, |acceleration|, |jerk| of an end-effector path (T, 3) by finite differences.

    Units are per control step by default (dt = 1); only ratios between methods matter.
    """
    x = np.asarray(hand_positions, dtype=np.float64)
    out = {}
    for order, name in ((1, "velocity"), (2, "acceleration"), (3, "jerk")):
        if len(x) <= order:
            out[name] = float("nan")
            continue
        d = np.diff(x, n=order, axis=0) / dt**order
        out[name] = float(np.linalg.norm(d, axis=-1).mean())
    return out


def summarize_episodes(episodes: list[dict]) -> dict:
    """Aggregate per-episode records ({'success', 'length', 'smoothness': {...}})."""
    n = len(episodes)
    k = sum(bool(e["success"]) for e in episodes)
    lo, hi = wilson_interval(k, n)
    lengths = np.array([e["length"] for e in episodes])
    smooth = {}
    for name in ("velocity", "acceleration", "jerk"):
        vals = np.array([e["smoothness"][name] for e in episodes], np.float64)
        # NaN when no episode measured it (no end-effector position, or too short)
        smooth[name] = float(vals[~np.isnan(vals)].mean()) if (~np.isnan(vals)).any() else float("nan")
    return {"success": k / n, "ci95": [lo, hi], "episodes": n, "successes": k,
            "length_mean": float(lengths.mean()), "length_std": float(lengths.std()),
            "smoothness": smooth}


def success_draws(successes, episodes, draws: int = 10_000, seed: int = 0) -> np.ndarray:
    """Draws of the mean success over seeds, for intervals "over seeds and episodes".

    `successes[i]` of `episodes[i]` evaluation episodes succeeded in seed i. Two levels, each a
    resampling of what was observed: the seeds are resampled with replacement (run-to-run spread), and
    each drawn seed's success rate is drawn from its Jeffreys posterior Beta(k + ½, n − k + ½) (episode
    spread; unlike a plain binomial resample it stays honest at 0/n and n/n). With one seed this is the
    Jeffreys interval of that seed's episodes. Deterministic for a given `seed`; the percentiles of the
    result (`draws_interval`) are the 95% interval, and differences of two such arrays give the interval
    of a difference (e.g. a method against the base).
    """
    k = np.asarray(successes, np.float64)
    n = np.asarray(episodes, np.float64)
    if k.ndim != 1 or k.shape != n.shape or len(k) == 0:
        raise ValueError("success_draws needs equally long, non-empty per-seed lists")
    if (n <= 0).any() or (k < 0).any() or (k > n).any():
        raise ValueError("success_draws needs 0 <= successes <= episodes and episodes > 0")
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(k), size=(draws, len(k)))  # seeds resampled with replacement
    rates = rng.beta(k[pick] + 0.5, n[pick] - k[pick] + 0.5)
    return rates.mean(axis=1)


def draws_interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Central percentile interval of bootstrap-style draws."""
    lo, hi = np.quantile(np.asarray(draws, np.float64), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
