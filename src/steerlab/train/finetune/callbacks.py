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


class Evaluation(Callback):
    """The learning curve: deterministic evaluations of the steered policy, logged with the training episodes'
    statistics and the latest SAC losses. The first point is the policy before any update (not repeated on a
    resume); then one at the first episode end past every `eval_every` steps; the last when the budget is spent."""

    def __init__(self, logger: RunLogger):
        self.logger = logger
        self.t0, self.steps0 = 0.0, 0

    def on_start(self, tuner) -> None:
        # residual methods start near the base (small initial residual); DSRL's untrained actor picks ε ≈ 0, which
        # is the *deterministic* base
        if not tuner.resumed:
            self.logger.log(0, **tuner.evaluate(), explore_jerk=float("nan"), explore_success=float("nan"))
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
        row = tuner.evaluate()
        window = tuner.window
        # nanmean: an episode that succeeds within 3 steps has no jerk (evaluation skips it too)
        jerks = [e["jerk"] for e in window] if tuner.pos_key else []
        row.update(explore_success=float(np.mean([e["success"] for e in window])) if window else float("nan"),
                   explore_jerk=float(np.nanmean(jerks)) if np.isfinite(jerks).any() else float("nan"),
                   episodes=tuner.episodes,
                   steps_per_s=(tuner.env_steps - self.steps0) / (time.perf_counter() - self.t0))
        if tuner.last_update:
            row.update({f"sac/{k}": v for k, v in tuner.last_update.items()})
        self.logger.log(tuner.env_steps, **row)
        tuner.window = []
        tuner.last_eval = row


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
    """A progress bar (env steps, latest evaluation's success, env steps per second); plain periodic lines when
    the output is not a terminal (core.progress)."""

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
            self.shown = row
            self.bar.set_postfix(success=f"{row['eval_success']:.2f}", sps=f"{row['steps_per_s']:.0f}")

    def on_close(self, tuner) -> None:
        if self.bar is not None:
            self.bar.close()
