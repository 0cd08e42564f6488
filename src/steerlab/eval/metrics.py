"""Evaluation statistics: return with a Student-t interval, success with a Wilson interval, end-effector smoothness.

What an evaluation did not measure is None with a reason in the summary's `"nulls"` map (docs/results.md):
the success of an env that never reports one (`success_reported` false in every episode), the smoothness of an
env without an end-effector position, the interval of a single episode.
"""

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


# two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30 (beyond: a Cornish-Fisher expansion, < 1e-3 off)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    if df < 1:
        raise ValueError("t975 needs df >= 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_interval(values) -> dict:
    """Mean, standard error and Student-t 95% interval of the mean over i.i.d. values (e.g. episode returns).

    The interval is None for a single value (no spread to estimate). {mean, se, ci95, n}."""
    x = np.asarray(values, np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError("mean_interval needs a non-empty 1-d list")
    mean = float(x.mean())
    if len(x) < 2:
        return {"mean": mean, "se": None, "ci95": None, "n": 1}
    se = float(x.std(ddof=1) / math.sqrt(len(x)))
    half = t975(len(x) - 1) * se
    return {"mean": mean, "se": se, "ci95": [mean - half, mean + half], "n": int(len(x))}


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


NO_SUCCESS = "this env never reported success (no success key in its info): only its return is measured"
NO_SMOOTHNESS = "not measured: the env exposes no end-effector position (or every episode was too short)"
ONE_EPISODE = "one episode: no interval"


def summarize_episodes(episodes: list[dict]) -> dict:
    """Aggregate per-episode records ({'return', 'success', 'success_reported', 'length', 'smoothness'}).

    return_mean with return_ci95 (Student-t 95% interval over episodes); success with ci95 (Wilson) when the
    env reports success (`success_reported`, default true), else None; unmeasured fields in `nulls`."""
    n = len(episodes)
    nulls: dict[str, str] = {}
    ret = mean_interval([e["return"] for e in episodes])
    if ret["ci95"] is None:
        nulls.update(return_ci95=ONE_EPISODE, return_se=ONE_EPISODE)
    reported = any(e.get("success_reported", True) for e in episodes)
    if reported:
        k = sum(bool(e["success"]) for e in episodes)
        success, ci95 = k / n, list(wilson_interval(k, n))
    else:
        k = success = ci95 = None
        nulls.update(success=NO_SUCCESS, ci95=NO_SUCCESS, successes=NO_SUCCESS)
    lengths = np.array([e["length"] for e in episodes])
    smooth = {}
    for name in ("velocity", "acceleration", "jerk"):
        vals = np.array([(e.get("smoothness") or {}).get(name, np.nan) for e in episodes], np.float64)
        ok = np.isfinite(vals)
        smooth[name] = float(vals[ok].mean()) if ok.any() else None
        if not ok.any():
            nulls[f"smoothness.{name}"] = NO_SMOOTHNESS
    return {"return_mean": ret["mean"], "return_ci95": ret["ci95"], "return_se": ret["se"],
            "return_std": float(np.std([e["return"] for e in episodes])),
            "success_reported": reported, "success": success, "ci95": ci95, "episodes": n, "successes": k,
            "length_mean": float(lengths.mean()), "length_std": float(lengths.std()),
            "smoothness": smooth, "nulls": nulls}


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
