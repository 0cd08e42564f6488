"""Finetune-loop throughput: is the loop bound by its SAC updates, as it should be, or by everything else?

    steerlab bench throughput            # push-wall-v3, zprl, N ∈ {1, 4, 8}: benchmarks/results/throughput.json
    steerlab bench throughput --quick    # fewer timed steps (a smoke test; throughput_quick.json)
    steerlab bench throughput --critic-only   # the phase where the updates train the critic alone

In one run, on one torch thread, it measures
  * the bare simulator's steps/s (random actions, one env, no policy);
  * the SAC update time (the same dimensions and SAC config as the loop, on the loop's own replay buffer,
    warmed up first);
  * the finetune loop's env steps/s for N ∈ {1, 4, 8} envs, synchronous (one process) and with
    `--async-envs` (the simulators in subprocesses, overlapped with the updates), after the warm-up, with
    evaluations and snapshots out of the timed window;
and reports each loop rate as a fraction of the *update-bound* rate, the rate the updates alone allow at the
same update-to-data ratio: n_action_steps / (utd × update time) env steps/s. That fraction is computed from
the updates the loop itself ran in the timed window (time in updates / loop time), so it cannot be skewed
by the machine running faster or slower than when the reference update time was taken; the reference (one
env's replay, before the loops) is recorded beside it. The issue's target is ≥ 0.8.

Which updates: a run's updates train the critic *and* the actor, except during the method's first
`critic_warmup` decisions after the warm-up (1,000 for zprl and dsrl, 2% of a 100k-step run), where they
train the critic alone and cost about half as much (one less backward pass). By default the timed window is
the steady state (critic_warmup = 0, so every update is a full one, as the reference is); `--critic-only`
times the critic-only phase instead (the reference then times critic-only updates too). Until 2026-11-28 the
window fell, unnoticed, inside zprl's critic-only phase while the reference timed full updates.

Times are wall clock and CPU time. The synchronous loop is one process, so its CPU-time rate is its rate on
one dedicated core; on a shared machine (see the recorded load average) that is the steadier number and the
headline. The asynchronous loop's learner (policy, actor, updates) is one process and its simulators others:
its learner-CPU rate is the rate with the learner on one core and the simulators on other cores (their CPU
time is recorded too), and its wall-clock rate is what this machine delivered. The base policy is the
finetune benchmark's (`steerlab bench pretrain`); per-step costs do not depend on how good it is.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from steerlab.bench.common import RESULTS, markdown_table
from steerlab.bench.finetune import BENCH_SAC
from steerlab.core.checkpoint import atomic_write_json, versions

TARGET = 0.8


def sim_rate(spec, steps: int) -> dict:
    from steerlab.envs.registry import make_env

    env = make_env(spec, seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(env.action_space.low, env.action_space.high, (steps, *env.action_space.shape))
    env.reset(seed=0)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(steps):
        _, _, term, trunc, _ = env.step(actions[i].astype(np.float32))
        if term or trunc:
            env.reset(seed=i)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    env.close()
    return {"steps": steps, "wall_steps_per_s": steps / wall, "cpu_steps_per_s": steps / cpu}


def tuner_for(base: str, task: str, method: str, n_envs: int, asynchronous: bool, utd: float, out: Path,
              critic_only: bool = False):
    """A finetune loop whose updates train critic and actor from the first one (a run's steady state), or
    the critic alone (`critic_only`: the phase of a run's first `critic_warmup` decisions)."""
    from steerlab.rl.sac import SACConfig
    from steerlab.train.finetune import FinetuneConfig, Finetuner

    sac = SACConfig(**BENCH_SAC)
    cfg = FinetuneConfig(base=base, method=method, env=task, env_steps=10**9, seed=0, out=str(out),
                         warmup_decisions=sac.batch_size, eval_every=10**9, checkpoint_every=10**9,
                         tensorboard=False, sac=sac, n_envs=n_envs, async_envs=asynchronous, utd=utd,
                         steering={"critic_warmup": 10**9 if critic_only else 0}, final_episodes=0, release_gate_episodes=0, sampler_noise_scale=1.0)
    return Finetuner(cfg, progress=False)


def warm_up(tuner, extra_steps: int = 50) -> None:
    """Step until updates run (replay ≥ batch, warm-up decisions done), then a few more steps."""
    tuner.start()
    while tuner.sac.updates == 0:
        tuner.step()
    for _ in range(extra_steps):
        tuner.step()


def update_time(tuner, n: int, critic_only: bool = False) -> dict:
    """Seconds per SAC update on the loop's own replay buffer (wall and thread CPU), after `n // 4` untimed
    updates (the first updates of a process run slower: allocations, caches)."""
    actor = not critic_only
    tuner.sac.update_many(tuner.replay, max(5, n // 4), update_actor=actor)
    t0, c0 = time.perf_counter(), time.thread_time()
    tuner.sac.update_many(tuner.replay, n, update_actor=actor)
    return {"updates": n, "wall_s": (time.perf_counter() - t0) / n, "cpu_s": (time.thread_time() - c0) / n}


def worker_cpu(envs) -> float:
    """CPU seconds used so far by an async vector env's worker processes (Linux /proc; 0 for sync envs)."""
    total = 0.0
    for proc in getattr(envs, "processes", []):
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total


def loop_rate(tuner, steps: int) -> dict:
    """Env steps/s of `tuner.step()` over at least `steps` env steps past the warm-up, and the time its own
    updates took in that window (the update-bound rate is computed from those, so a drift of the machine's
    speed between measurements cannot inflate or deflate the ratio)."""
    spent = {"wall": 0.0, "cpu": 0.0}
    update_many = tuner.sac.update_many

    def timed(*a, **k):
        t, c = time.perf_counter(), time.thread_time()
        out = update_many(*a, **k)
        spent["wall"] += time.perf_counter() - t
        spent["cpu"] += time.thread_time() - c
        return out

    tuner.sac.update_many = timed
    s0, u0, d0 = tuner.env_steps, tuner.sac.updates, tuner.decisions
    t0, c0, w0 = time.perf_counter(), time.process_time(), worker_cpu(tuner.envs)
    while tuner.env_steps - s0 < steps:
        tuner.step()
    wall, cpu, workers = time.perf_counter() - t0, time.process_time() - c0, worker_cpu(tuner.envs) - w0
    tuner.sac.update_many = update_many
    n, updates = tuner.env_steps - s0, tuner.sac.updates - u0
    return {"env_steps": n, "updates": updates, "decisions": tuner.decisions - d0,
            "wall_env_steps_per_s": n / wall, "cpu_env_steps_per_s": n / cpu,
            "update_wall_ms": 1e3 * spent["wall"] / updates, "update_cpu_ms": 1e3 * spent["cpu"] / updates,
            # the fraction of the loop's time spent in its updates = its rate / the rate the updates allow
            "ratio_wall": spent["wall"] / wall, "ratio_cpu": spent["cpu"] / cpu,
            "worker_cpu_ms_per_env_step": 1e3 * workers / n}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench throughput", description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="push-wall-v3")
    ap.add_argument("--method", default="zprl")
    ap.add_argument("--base", default=None, help="base checkpoint (default: the finetune benchmark's)")
    ap.add_argument("--n-envs", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--utd", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=1600, help="timed env steps per loop configuration")
    ap.add_argument("--quick", action="store_true", help="200 timed steps (a smoke test)")
    ap.add_argument("--conditions", default=None,
                    help="how the machine was kept quiet, recorded with the result (e.g. 'other jobs paused')")
    ap.add_argument("--critic-only", action="store_true",
                    help="time the phase whose updates train the critic alone (default: critic and actor)")
    ap.add_argument("--out", default=None,
                    help="JSON path (default benchmarks/results/throughput.json; --quick: throughput_quick.json)")
    args = ap.parse_args(argv)
    import torch

    from steerlab.envs.registry import resolve_env

    torch.set_num_threads(1)
    steps = 200 if args.quick else args.steps
    # a smoke test never replaces the recorded numbers the README shows
    args.out = args.out or str(RESULTS / ("throughput_quick.json" if args.quick else
                                          "throughput_critic_only.json" if args.critic_only else "throughput.json"))
    if args.base is None:
        from steerlab.bench.pretrain import base_checkpoint

        args.base = str(base_checkpoint(args.task, progress=False))
    load0 = os.getloadavg()
    result = {"task": args.task, "method": args.method, "utd": args.utd, "sac": BENCH_SAC, "timed_steps": steps,
              "update_phase": "critic only" if args.critic_only else "critic and actor",
              "torch_threads": 1, "cpus": os.cpu_count(), "platform": platform.platform(), "versions": versions(),
              "sim": sim_rate(resolve_env(args.task), max(steps, 500)), "loops": []}
    with tempfile.TemporaryDirectory() as tmp:
        ref = tuner_for(args.base, args.task, args.method, 1, False, args.utd, Path(tmp) / "ref", args.critic_only)
        warm_up(ref)
        result["update"] = update_time(ref, 50 if args.quick else 200, args.critic_only)
        ref.envs.close()
        k = ref.k
        result["n_action_steps"] = k
        for kind in ("wall", "cpu"):
            result[f"update_bound_{kind}_env_steps_per_s"] = k / (args.utd * result["update"][f"{kind}_s"])
        for n in args.n_envs:
            for asynchronous in ((False, True) if n > 1 else (False,)):
                tuner = tuner_for(args.base, args.task, args.method, n, asynchronous, args.utd,
                                  Path(tmp) / f"n{n}{'a' if asynchronous else 's'}", args.critic_only)
                try:
                    warm_up(tuner)
                    row = {"n_envs": n, "async": asynchronous, **loop_rate(tuner, steps)}
                finally:
                    tuner.envs.close()
                # sync: the whole loop's CPU; async: the learner process's (its simulators run elsewhere)
                result["loops"].append(row)
                print(f"N={n} {'async' if asynchronous else 'sync '}: {row['cpu_env_steps_per_s']:.0f} env steps per "
                      f"{'learner ' if asynchronous else ''}CPU-s (ratio {row['ratio_cpu']:.2f}), "
                      f"{row['wall_env_steps_per_s']:.0f} per wall-s (ratio {row['ratio_wall']:.2f})", flush=True)
    result["loadavg_start"], result["loadavg_end"] = list(load0), list(os.getloadavg())
    if args.conditions:
        result["conditions"] = args.conditions
    result["target_ratio"] = TARGET
    atomic_write_json(args.out, result)
    print(f"sim {result['sim']['cpu_steps_per_s']:.0f} steps per CPU-s; update {1e3 * result['update']['cpu_s']:.1f} "
          f"CPU-ms -> update-bound {result['update_bound_cpu_env_steps_per_s']:.0f} env steps per CPU-s; -> {args.out}")
    return 0


def table(results: dict) -> str:
    """README rows: one per loop configuration."""
    rows = []
    for r in results["loops"]:
        rows.append([str(r["n_envs"]), "async (learner core)" if r["async"] else "sync (one core)",
                     f"{r['cpu_env_steps_per_s']:.0f} ({r['ratio_cpu']:.2f})",
                     f"{r['wall_env_steps_per_s']:.0f} ({r['ratio_wall']:.2f})",
                     f"{r['cpu_env_steps_per_s'] / results['update_bound_cpu_env_steps_per_s']:.2f}",
                     f"{r['update_cpu_ms']:.1f}",
                     f"{r['worker_cpu_ms_per_env_step']:.2f}" if r["async"] else "—"])
    u = results["update"]
    # (records written before the field existed do not say which updates their loops timed)
    phase = f", updates training the {results['update_phase']}" if "update_phase" in results else ""
    head = (f"{results['task']}, {results['method']}, UTD {results['utd']:g}, {results['n_action_steps']} env steps per "
            f"decision, one torch thread{phase}. Bare simulator: {results['sim']['cpu_steps_per_s']:.0f} steps per CPU-second; "
            f"SAC update alone: {1e3 * u['cpu_s']:.1f} CPU-ms ({1e3 * u['wall_s']:.1f} ms wall), so the updates allow "
            f"{results['update_bound_cpu_env_steps_per_s']:.0f} env steps per CPU-second. Loop rate and, in brackets, "
            f"its fraction of the update-bound rate (= share of the loop's time spent in its own updates; target "
            f"≥ {results['target_ratio']}). Inside the loop the same updates cost more CPU than alone (column 'update CPU-ms "
            f"in the loop'), so the rate against the standalone update's bound ('CPU rate / standalone-update bound') "
            f"is lower; both are shown. Machine load average "
            f"{results['loadavg_start'][0]:.1f} on {results['cpus']} CPUs"
            + (f" ({results['conditions']})" if results.get("conditions") else "") + ":\n\n")
    return head + markdown_table(["envs", "stepping", "env steps per CPU-s (ratio)", "env steps per wall-s (ratio)",
                                  "CPU rate / standalone-update bound", "update CPU-ms in the loop", "simulator CPU-ms per step in workers"], rows)


if __name__ == "__main__":
    sys.exit(main())
