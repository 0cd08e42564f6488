"""Diagnose the start of online RL (issue 13, items 3 and 5): DSRL's collapse and ZPRL's dip.

Runs short finetunes of one task with the old start (`--start random`: plain SAC init, no critic-only
phase, DSRL entropy target −dim/2) and the new one (`--start base`, steerlab.rl.steering), and logs at
every evaluation, besides the success, what the actor does on a fixed probe batch of replay states:

* the deterministic action a = tanh(mean): RMS over dimensions and the share of saturated dims (|a| > 0.95);
* dsrl: the per-dimension RMS of the noise the actor feeds the sampler, deterministic (1.5·a) and
  sampled, next to a standard normal's 1.0;
* zprl: the applied latent shift λ·a relative to RMS(z) (the paper's rule of thumb: ≈ 0.1);
* the policy's mean pre-tanh std, SAC entropy, α, mean Q.

    steerlab bench diagnose_start --task push-wall-v3 --method dsrl --start random
    steerlab bench diagnose_start --table

Results: benchmarks/results/start_diagnosis.json (one record per task / method / start / seed; recorded
records are skipped). Bases come from steerlab.bench.pretrain (rebuilt deterministically when missing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict

from steerlab.bench.common import RESULTS, RUNS, load_cell, markdown_table
from steerlab.core.io import atomic_write_json

OUT = RESULTS / "start_diagnosis.json"


def actor_stats(tuner, probe_obs) -> dict:
    import torch

    sac, adapter = tuner.sac, tuner.adapter
    with torch.no_grad():
        x = torch.as_tensor(probe_obs)
        mean, log_std = sac.actor(x)
        det = torch.tanh(mean)
        gen = torch.Generator().manual_seed(0)
        sampled = sac.actor.sample(x, gen)[0]
    out = {"det_rms": float(det.pow(2).mean().sqrt()), "det_saturated": float((det.abs() > 0.95).float().mean()),
           "std_mean": float(log_std.exp().mean())}
    if adapter.level == "noise":  # dsrl, dsrl-na
        out["noise_rms_det"] = float((adapter.scale * det).pow(2).mean().sqrt())
        out["noise_rms_sampled"] = float((adapter.scale * sampled).pow(2).mean().sqrt())
    if adapter.name == "zprl":
        z_rms = float(x[:, adapter.embed_dim:].pow(2).mean().sqrt())
        out["latent_shift_rel"] = float((adapter.scale * det).pow(2).mean().sqrt()) / max(z_rms, 1e-8)
        out["latent_shift_rel_sampled"] = float((adapter.scale * sampled).pow(2).mean().sqrt()) / max(z_rms, 1e-8)
    return out


def run(task: str, method: str, start: str, seed: int, env_steps: int, warmup: int, eval_every: int,
        eval_episodes: int, hidden: int, sac_overrides: dict | None = None, tag: str = "",
        steering_overrides: dict | None = None) -> dict:
    import torch

    from steerlab.bench.pretrain import base_checkpoint
    from steerlab.rl.sac import SACConfig
    from steerlab.train.finetune import FinetuneConfig, Finetuner

    torch.set_num_threads(1)
    base = base_checkpoint(task, seed=0, progress=False)
    # the protocol in the name: a run of another length or evaluation size never lands in an earlier run's folder
    out = RUNS / "diagnose_start" / f"{task}__{method}__{start}{tag}__seed{seed}__{env_steps}st-{eval_episodes}ep"
    steering = {"start": start, **(steering_overrides or {})}
    if start == "random" and method == "dsrl":
        steering["critic_warmup"] = 0
    cfg = FinetuneConfig(base=str(base), method=method, env=task, env_steps=env_steps, seed=seed, out=str(out),
                         warmup_decisions=warmup, eval_every=eval_every, eval_episodes=eval_episodes,
                         checkpoint_every=10 * env_steps, tensorboard=False, sac=SACConfig(hidden=hidden, **(sac_overrides or {})),
                         steering=steering, final_episodes=0, release_gate_episodes=0, sampler_noise_scale=1.0)
    # an override named here wins over the method's start even where it equals SACConfig's default
    # (resolve_sac cannot tell an explicit default from an unset field), e.g. {"actor_tether": 0.0} for dsrl
    from steerlab.rl.steering import method_class

    cls = method_class(method)
    start_fields = cls.sac_start
    cls.sac_start = {k: v for k, v in start_fields.items() if k not in (sac_overrides or {})}
    try:
        tuner = Finetuner(cfg, progress=False)
    finally:
        cls.sac_start = start_fields
    curve = []
    probe = {}
    evaluate = tuner.evaluate
    last = {}

    def evaluate_and_probe():
        # the evaluation is deterministic (fixed episode seeds, the actor's mean): while the actor has not
        # changed since the previous evaluation (warm-up, critic-only phase) its result is that one's, exactly
        params = [p.detach().clone() for p in tuner.sac.actor.parameters()]
        if "params" in last and all(torch.equal(a, b) for a, b in zip(params, last["params"], strict=True)):
            row = last["row"]
        else:
            row = evaluate()
        last.update(params=params, row=row)
        if "obs" not in probe and len(tuner.replay) >= 256:  # the first 256 states seen, fixed from then on
            probe["obs"] = tuner.replay.obs[:256].copy() if hasattr(tuner.replay, "obs") else None
        stats = actor_stats(tuner, probe["obs"]) if probe.get("obs") is not None else {}
        logs = {k: v for k, v in (getattr(tuner, "last_update", None) or {}).items()
                if k in ("entropy", "alpha", "q_mean", "critic_loss", "distill_loss", "q_noise_mean")}
        curve.append({"step": tuner.env_steps, "success": row["eval_success"], **stats, **logs})
        print(f"{method}/{start} step {tuner.env_steps}: success {row['eval_success']:.2f} "
              + " ".join(f"{k} {v:.3g}" for k, v in {**stats, **logs}.items()), flush=True)
        return row

    tuner.evaluate = evaluate_and_probe
    t0 = time.perf_counter()
    tuner.run(resume=False)
    base_s = curve[0]["success"]
    after = [c["success"] for c in curve if c["step"] > 2 * warmup]
    xs = [c["step"] for c in curve]
    ys = [c["success"] for c in curve]
    auc = sum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(len(xs) - 1)) / max(xs[-1], 1)
    return {"task": task, "method": method, "start": start + tag, "sac_overrides": sac_overrides or {},
            "steering_overrides": steering_overrides or {}, "sac": asdict(tuner.cfg.sac), "seed": seed, "env_steps": env_steps, "warmup": warmup,
            "auc": auc,
            "eval_episodes": eval_episodes, "hidden": hidden, "curve": curve, "seconds": time.perf_counter() - t0,
            "step0": base_s, "min_after_warmup": min(after) if after else None,
            "dip": (min(after) - base_s) if after else None, "final": curve[-1]["success"]}


def table(res: dict) -> str:
    rows = []
    for _key, r in sorted(res.items()):
        last = r["curve"][-1]
        extra = (f"noise RMS det {last.get('noise_rms_det', float('nan')):.2f}, sampled "
                 f"{last.get('noise_rms_sampled', float('nan')):.2f}" if r["method"] in ("dsrl", "dsrl-na") else
                 f"λ·Δz / RMS(z) det {last.get('latent_shift_rel', float('nan')):.3f}")
        auc = f"{r['auc']:.2f}" if "auc" in r else "–"
        rows.append([r["task"], r["method"], r["start"], str(r["seed"]), f"{r['env_steps'] // 1000}k / {r['eval_episodes']}",
                     f"{r['step0']:.2f}", f"{r['min_after_warmup']:.2f}", f"{r['dip']:+.2f}", f"{r['final']:.2f}", auc, extra])
    return markdown_table(["task", "method", "start", "seed", "steps / eval episodes", "success at step 0",
                           "lowest after warm-up", "dip", "final", "AUC", "actor at the end"], rows)


def curves_table(res: dict) -> str:
    """The records with 20-episode evaluations as docs/zprl.md shows them: one success curve per run."""
    rows = []
    for r in sorted(res.values(), key=lambda r: (r["task"], r["seed"], r["method"], r["start"])):
        if r["eval_episodes"] < 20:
            continue
        last = r["curve"][-1]
        actor = (f"noise RMS {last['noise_rms_det']:.2f}" if "noise_rms_det" in last else
                 f"λ·Δz {last['latent_shift_rel']:.3f}·RMS(z)" if "latent_shift_rel" in last else
                 f"RMS(a) {last.get('det_rms', float('nan')):.2f}")
        actor += f", {100 * last.get('det_saturated', 0):.0f}% saturated, Q {last.get('q_mean', float('nan')):.1f}"
        # the tether the run trained with (records from before it existed have no "sac": β = 0)
        tether = r.get("sac", {}).get("actor_tether", r.get("sac_overrides", {}).get("actor_tether", 0.0))
        variant = f"{r['start'].removeprefix('base').lstrip('+') or 'default'} (β = {tether:g})"
        rows.append([f"{r['task']}, {r['seed']}", f"{r['method']}, {variant}",
                     " ".join(f"{c['success']:.2f}" for c in r["curve"]), f"{r['dip']:+.2f}", f"{r['auc']:.2f}", actor])
    return markdown_table(["task, seed", "method, variant", "success curve", "dip", "AUC", "actor at the end"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steerlab bench diagnose_start", description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="push-wall-v3")
    ap.add_argument("--method", default="dsrl")
    ap.add_argument("--start", default="random", choices=["random", "base"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--env-steps", type=int, default=6_000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--eval-every", type=int, default=1_000)
    ap.add_argument("--eval-episodes", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=128, help="SAC width (the benchmark's 128)")
    ap.add_argument("--sac-json", default=None, help="SACConfig overrides on top of the start (a variant)")
    ap.add_argument("--steering-json", default=None, help="steering-method options on top of the start (a variant)")
    ap.add_argument("--tag", default="", help="suffix naming the variant in the record, e.g. '+alpha0.1'")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--curves", action="store_true", help="print the 20-episode records' curves (docs/zprl.md)")
    args = ap.parse_args(argv)
    res = load_cell(OUT) or {}
    if args.table or args.curves:
        print(curves_table(res) if args.curves else table(res))
        return 0
    key = f"{args.task}|{args.method}|{args.start}{args.tag}|seed{args.seed}"
    if (args.env_steps, args.warmup, args.eval_every, args.eval_episodes, args.hidden) != (8_000, 500, 1_000, 10, 128):
        # the first records (8k steps, warm-up 500, 10-episode evaluations every 1k) keep their keys
        key += f"|{args.env_steps}st-wu{args.warmup}-{args.eval_episodes}ep-every{args.eval_every}-h{args.hidden}"
    if key not in res:
        rec = run(args.task, args.method, args.start, args.seed, args.env_steps, args.warmup, args.eval_every,
                  args.eval_episodes, args.hidden, json.loads(args.sac_json) if args.sac_json else None, args.tag,
                  json.loads(args.steering_json) if args.steering_json else None)
        res = load_cell(OUT) or {}
        res[key] = rec
        atomic_write_json(OUT, res)
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
