"""Callbacks of the online-RL loop (in the spirit of Stable-Baselines3): what happens around the training steps.

The loop (loop.py) calls, in list order:
- `on_start(tuner)` once before the first step (also on a resume; `tuner.resumed` says which),
- `on_step(tuner, records)` after every vector step (`records`: the training episodes that just ended),
- `on_rest(tuner)` when every env is between episodes and the run goes on (snapshot points),
- `on_end(tuner)` when the budget is spent (not after a stop by signal),
- `on_close(tuner)` always, last, even after an exception.

Evaluation, snapshots, signals and the progress display each live in one class here; none of them draws from the
training RNG streams, so adding or removing a display callback never changes the numbers.
"""

from __future__ import annotations

import signal
import threading
import time

import numpy as np

from steerlab.core.logger import RunLogger
from steerlab.core.progress import progress_bar


class Callback:
    def on_start(self, tuner) -> None: ...

    def on_step(self, tuner, records: list[dict]) -> None: ...

    def on_rest(self, tuner) -> None: ...

    def on_end(self, tuner) -> None: ...

    def on_close(self, tuner) -> None: ...


def eval_row(res: dict) -> dict:
    """The learning-curve fields of one evaluation (`eval.rollout.evaluate`'s result): return with its 95%
    t-interval, success (None where the env reports none), length and jerk, and why any of them is null."""
    ci = res["return_ci95"] or [None, None]
    nulls = {f"eval_{k}": why for k, why in res["nulls"].items() if k in ("success", "return_se")}
    nulls.update({f"eval_return_{end}": why for end in ("lo", "hi")
                  for k, why in res["nulls"].items() if k == "return_ci95"})
    if res["smoothness"]["jerk"] is None:
        nulls["eval_jerk"] = res["nulls"].get("smoothness.jerk", "not measured")
    return {"eval_return": res["return_mean"], "eval_return_lo": ci[0], "eval_return_hi": ci[1],
            "eval_return_se": res["return_se"], "eval_episodes": res["episodes"], "eval_success": res["success"],
            "eval_jerk": res["smoothness"]["jerk"], "eval_length": res["length_mean"], "nulls": nulls}


def window_row(window: list[dict], pos_key) -> dict:
    """The training episodes since the last evaluation: their mean return, success and jerk (None + why)."""
    nulls = {}
    if not window:
        nulls = {k: "no training episode ended since the last evaluation"
                 for k in ("explore_return", "explore_success", "explore_jerk")}
        return {"explore_return": None, "explore_success": None, "explore_jerk": None, "nulls": nulls}
    succ = [e["success"] for e in window if e["success"] is not None]
    if not succ:
        nulls["explore_success"] = "this env never reported success"
    # nanmean: an episode that succeeds within 3 steps has no jerk (evaluation skips it too)
    jerks = np.array([e["jerk"] for e in window], float) if pos_key else np.array([np.nan])
    if not np.isfinite(jerks).any():
        nulls["explore_jerk"] = "not measured (no end-effector position)" if not pos_key else "episodes too short"
    return {"explore_return": float(np.mean([e["return"] for e in window])),
            "explore_success": float(np.mean(succ)) if succ else None,
            "explore_jerk": float(np.nanmean(jerks)) if np.isfinite(jerks).any() else None, "nulls": nulls}


def log_row(logger: RunLogger, step: int, *parts: dict, **extra) -> dict:
    """Merge row parts (each may carry a `nulls` map) and log them as one metrics row."""
    row, nulls = {}, {}
    for part in parts:
        part = dict(part)
        nulls.update(part.pop("nulls", {}))
        row.update(part)
    row.update(extra)
    logger.log(step, nulls=nulls, **row)
    return {**row, "nulls": nulls}


class Evaluation(Callback):
    """The learning curve: evaluations of the steered policy (return with its 95% interval, success where the
    env reports it), logged with the training episodes' statistics (`explore_return`, ...) and the latest SAC
    losses. The first point is the policy before any update, the base's own score (not repeated on a resume;
    `tuner.base_eval` then reads it back from metrics.jsonl); then one at the first episode end past every
    `eval_every` steps; the last when the budget is spent."""

    def __init__(self, logger: RunLogger):
        self.logger = logger
        self.t0, self.steps0 = 0.0, 0

    def on_start(self, tuner) -> None:
        # residual methods start near the base (small initial residual); DSRL's untrained actor picks ε ≈ 0, which
        # is the *deterministic* base
        if not tuner.resumed:
            nulls = {k: "step 0: no training episode yet" for k in ("explore_return", "explore_success",
                                                                     "explore_jerk")}
            tuner.base_eval = log_row(self.logger, 0, tuner.evaluate(), {"nulls": nulls}, explore_return=None,
                                      explore_success=None, explore_jerk=None)
        else:
            tuner.base_eval = first_eval_row(self.logger.dir)
        self.t0, self.steps0 = time.perf_counter(), tuner.env_steps

    def on_step(self, tuner, records: list[dict]) -> None:
        tuner.window.extend(records)
        # a periodic evaluation at the first episode end past its step (it draws no training randomness)
        if records and tuner.next_eval <= tuner.env_steps < tuner.cfg.env_steps:
            tuner.next_eval += tuner.cfg.eval_every
            self.log(tuner)

    def on_end(self, tuner) -> None:
        # (updates owed to the last transitions stay owed: they run during the next env step of an extended
        # run, exactly as in an uninterrupted one, so the final actor is the saved state's)
        tuner.next_eval += tuner.cfg.eval_every
        self.log(tuner)

    def log(self, tuner) -> None:
        sac = {f"sac/{k}": v for k, v in tuner.last_update.items()} if tuner.last_update else {}
        tuner.last_eval = log_row(self.logger, tuner.env_steps, tuner.evaluate(),
                                  window_row(tuner.window, tuner.pos_key), sac, episodes=tuner.episodes,
                                  steps_per_s=(tuner.env_steps - self.steps0) / (time.perf_counter() - self.t0))
        tuner.window = []


def first_eval_row(run_dir) -> dict | None:
    """The run's step-0 evaluation (the base's own score) from its metrics.jsonl, NaN for nulls."""
    from steerlab.core.logger import read_metrics

    try:
        rows = read_metrics(run_dir)
    except FileNotFoundError:
        return None
    return next((r for r in rows if r.get("step") == 0 and "eval_length" in r), None)


class Snapshots(Callback):
    """Resumable training state every `checkpoint_every` env steps, and when a stop was asked for. The
    finetuner drains (starts no new episodes) while a snapshot is due, so this runs with every env between
    episodes: an exact resume point."""

    def on_rest(self, tuner) -> None:
        if tuner.env_steps >= tuner.next_ckpt:
            tuner.next_ckpt += tuner.cfg.checkpoint_every
            tuner.save_state()
        elif tuner.stop_signal is not None:
            tuner.save_state()


class StopOnSignal(Callback):
    """SIGINT/SIGTERM ask the run to stop: one env finishes its episode and saves a snapshot; several envs stop
    at once (the last scheduled snapshot is the resume point). A second Ctrl-C stops at once."""

    def __init__(self):
        self.saved: dict = {}

    def on_start(self, tuner) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            if tuner.stop_signal is not None:  # a second Ctrl-C: stop now, the last snapshot stays
                raise KeyboardInterrupt
            tuner.stop_signal = signal.Signals(signum).name
            what = ("finishing the current episode, then saving a snapshot" if tuner.n == 1 else
                    "stopping after this step; the run resumes from its last snapshot")
            print(f"\n{tuner.stop_signal}: {what}", flush=True)

        self.saved = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def on_close(self, tuner) -> None:
        for s, h in self.saved.items():
            signal.signal(s, h)
        self.saved = {}


class Progress(Callback):
    """A progress bar: env steps, the latest evaluation's return (and success where the env reports it), the
    base's score (the step-0 evaluation), a WARNING when the latest evaluation is below it beyond noise
    (`results.row_verdict`), env steps per second; plain periodic lines when the output is not a terminal (core.progress)."""

    def __init__(self, enabled: bool = True):
        self.enabled, self.bar, self.shown = enabled, None, None

    def on_start(self, tuner) -> None:
        cfg = tuner.cfg
        self.bar = progress_bar(total=cfg.env_steps, initial=tuner.env_steps, unit="step", dynamic_ncols=True,
                        desc=f"{cfg.method} {tuner.env_spec.id} s{cfg.seed}", disable=not self.enabled)
        self.done = tuner.env_steps

    def on_step(self, tuner, records: list[dict]) -> None:
        self.bar.update(tuner.env_steps - self.done)
        self.done = tuner.env_steps
        self._show(tuner)

    def on_end(self, tuner) -> None:
        self._show(tuner)

    def _show(self, tuner) -> None:
        row = getattr(tuner, "last_eval", None)
        if row is not None and row is not self.shown:
            from steerlab.train.results import row_verdict

            self.shown = row
            shown = {"ret": f"{row['eval_return']:.1f}"}
            if row.get("eval_success") is not None:
                shown["success"] = f"{row['eval_success']:.2f}"
            verdict = row_verdict(getattr(tuner, "base_eval", None), row)
            if verdict is not None:
                shown["base"] = f"{verdict['base']:.2f}" if verdict["metric"] == "success" else f"{verdict['base']:.1f}"
                if verdict["verdict"] == "regressed":
                    shown["WARNING"] = f"{verdict['metric']} below the base's beyond noise"
            shown["sps"] = f"{row['steps_per_s']:.0f}"
            self.bar.set_postfix(shown)

    def on_close(self, tuner) -> None:
        if self.bar is not None:
            self.bar.close()
