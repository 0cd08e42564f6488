"""The online-RL loop, readable top to bottom: step the envs until the budget is spent, with callbacks around.

Training-state snapshots are taken only when every env is between episodes: every `checkpoint_every` steps the
envs stop starting new episodes, finish theirs, and the state is saved; no simulator state is needed, and a
resumed run continues *exactly* as the uninterrupted run would have (same replay contents, same RNG streams).
With one env the episode end at which a run stops is such a point too; several envs stop at once and resume
from the last scheduled snapshot. The run folder is guarded and locked by the caller (`folder.run_folder`), and
a resume must use the recorded arguments (`snapshots.check_same_run`).
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from steerlab.core.checkpoint import atomic_write_json, read_json
from steerlab.core.io import clean_temps
from steerlab.core.logger import RunLogger
from steerlab.rl.steering import save_steered_policy
from steerlab.train.finetune.callbacks import Callback, Evaluation, Progress, Snapshots, StopOnSignal
from steerlab.train.finetune.gate import print_report, release_gate
from steerlab.train.finetune.mode import decide as decide_sampler_mode
from steerlab.train.finetune.mode import trained_mode
from steerlab.train.finetune.snapshots import check_same_run, run_record
from steerlab.train.results import write_run_result


def train(tuner, callbacks: list[Callback]) -> None:
    """Step `tuner` until its budget is spent or a stop signal arrives; `callbacks` do everything else."""
    cfg = tuner.cfg
    try:
        for cb in callbacks:
            cb.on_start(tuner)
        if tuner.env_steps >= cfg.env_steps:  # a finished run resumed with the same budget: nothing to do
            return
        tuner.start()
        while True:
            records = tuner.step()
            for cb in callbacks:
                cb.on_step(tuner, records)
            spent = tuner.env_steps >= cfg.env_steps
            if tuner.n > 1 and (spent or tuner.stop_signal is not None):
                # several envs stop at once (mid-episode); the last scheduled snapshot is the resume point
                tuner.interrupted = not spent
                break
            if tuner.active.any():
                continue
            # every env is between episodes: the budget is spent, a snapshot is due, or a stop was asked for
            if spent:
                break
            for cb in callbacks:
                cb.on_rest(tuner)
            if tuner.stop_signal is not None:
                tuner.interrupted = True
                break
            tuner.start()
        if not tuner.interrupted:
            for cb in callbacks:
                cb.on_end(tuner)
    finally:
        for cb in callbacks:
            cb.on_close(tuner)


def run(tuner, resume: bool = True) -> Path:
    """Train `tuner` in its run folder (the caller holds its lock), resuming from its snapshot when `resume`;
    then the release gate (gate.py), the released policy, a final snapshot and result.json."""
    cfg, out = tuner.cfg, tuner.out
    for folder in (out, out / "policy"):  # what writes killed mid-way left (we hold the lock)
        clean_temps(folder)
    config_path = out / "config.json"
    recorded = read_json(config_path) if resume and config_path.is_file() else None
    if recorded is not None:
        check_same_run(tuner, recorded)
    # the sampler mode before anything trains: the recorded one on a resume, else fixed or decided by the rule
    tuner.set_sampler_mode(decide_sampler_mode(tuner, recorded))
    tuner.resumed = recorded is not None and tuner.load_state()
    if recorded is None or recorded["finetune"]["env_steps"] != cfg.env_steps:
        atomic_write_json(config_path, run_record(tuner))  # a longer budget is recorded
    # rows (and TensorBoard points) logged after the snapshot would repeat: the logger drops them
    logger = RunLogger(out, tensorboard=cfg.tensorboard, append=recorded is not None,
                       resume_at=tuner.env_steps if tuner.resumed else None)
    try:
        train(tuner, [StopOnSignal(), Evaluation(logger), Progress(tuner.progress), Snapshots()])
    finally:
        logger.close()
        tuner.envs.close()
    if tuner.interrupted:
        return out
    policy = tuner.steered_policy()
    gate = None
    if cfg.release_gate_episodes > 0:  # the steered policy vs the base on the gate split: which one is released
        gate = release_gate(policy, tuner.env_spec, cfg.release_gate_episodes, cfg.seed)
        policy.release_gate = gate
    save_steered_policy(policy, out / "policy", sac_config=asdict(cfg.sac))
    if not tuner.active.any():  # every env between episodes: an exact resume point (always so with one env)
        tuner.save_state()
    # result.json last: AUC, dip, final success sampled and from ε = 0 (steerlab.train.results), the trained one named
    extra = {"sampler_mode": tuner.sampler_mode, "released": policy.released, "release": gate}
    if cfg.final_episodes > 0:
        extra["final_trained_mode"] = trained_mode(tuner.noise_scale)
    why = None if gate else {"release": "no release gate (release_gate_episodes 0): the steered policy is released"}
    result = write_run_result(out, cfg, tuner.env_spec, cfg.final_episodes,
                              warmup_env_steps=cfg.warmup_decisions * tuner.k, extra=extra, extra_nulls=why)
    warn_if_regressed(result.get("regressed"), out)
    if gate is not None:
        print_report(gate)
    return out


def warn_if_regressed(verdict: dict | None, out: Path) -> None:
    """The run made the policy worse than the base beyond noise: say so on stderr (result.json records it)."""
    if verdict and verdict["verdict"] == "regressed":
        print(f"WARNING: the steered policy ends below the base: {verdict['metric']} {verdict['final']:.3g} vs the "
              f"base's {verdict['base']:.3g} (margin {verdict['margin']:.3g}, 95% noise of the difference); "
              f"{out / 'result.json'} records it as 'regressed'", file=sys.stderr, flush=True)
