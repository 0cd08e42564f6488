"""Behaviour fingerprint: a fixed set of short runs, hashed, so a refactor can prove it changed nothing.

Runs, all from the `steerlab` command line on tiny budgets (about two minutes on one core):
collect (Meta-World reach-v3, 4 mixed demos) -> pretrain (60 steps) -> finetune with every registered steering
method (1 env) and zprl with 4 envs -> personalize (prop and sealed, point_robot recipe, fixed test keys) ->
two attacks (random keys, key reading; --quick) on the prop model.

For each run the fingerprint is the SHA-256 of every weights file's tensors (names, dtypes, shapes, bytes) and of
every metrics row with wall-clock fields removed. Compare two fingerprints with `--compare a.json b.json`.

    steerlab bench fingerprint --out /tmp/fp.json          # writes the fingerprint
    steerlab bench fingerprint --compare before.json after.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import tempfile
from pathlib import Path

from safetensors.numpy import load_file

from steerlab.bench.common import steerlab_command

# wall-clock or host-dependent fields: not part of what a run computes
VOLATILE = {"time", "wall_s", "sps", "env_sps", "elapsed_s", "seconds", "wall_time", "updates_per_s", "created",
            "steps_per_s", "duration_s", "wall", "walltime", "timestamp", "started", "finished", "host"}
METHODS = ["zprl", "action-residual", "dsrl", "embedding-residual"]
FIXED_KEYS = {"alice": bytes(range(16)), "bob": bytes(range(100, 116))}  # test keys only, never real ones


def weights_digest(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.rglob("*.safetensors")):
        h = hashlib.sha256()
        for name, array in sorted(load_file(str(path)).items()):
            h.update(f"{name}:{array.dtype}:{array.shape}".encode())
            h.update(array.tobytes())
        out[path.relative_to(folder).as_posix()] = h.hexdigest()
    return out


def strip(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN written before strict JSON, null after: the same missing measurement
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


# fields later issues added to the metrics rows on purpose (episode return and its interval, the nulls map): a
# refactor's fingerprint compares what the rows measured before them; the new fields have their own tests
ADDED_METRICS = ("eval_return", "explore_return", "eval_episodes", "nulls")


def metrics_digest(folder: Path) -> str | None:
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [{k: v for k, v in strip(json.loads(line)).items() if not k.startswith(ADDED_METRICS)}
            for line in path.read_text().splitlines() if line.strip()]
    return hashlib.sha256(json.dumps(rows, sort_keys=True, allow_nan=False).encode()).hexdigest()


# what result.json measures (keys added later only describe the run, e.g. the sampler-mode record)
RESULT_KEYS = ("auc", "dip", "start_success", "lowest_after_warmup", "curve", "curve_steps", "explore_jerk",
               "final_sampled", "final_sampled_ci95", "final_eps0", "final_eps0_ci95", "final_best", "final_episodes")


def json_digest(path: Path, keys: tuple[str, ...] | None = None) -> str:
    doc = strip(json.loads(path.read_text()))
    if keys is not None:
        doc = {k: doc.get(k) for k in keys}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, allow_nan=False).encode()).hexdigest()


SOURCE: dict[str, str | None] = {"src": None}  # --src: fingerprint another checkout's steerlab


def run(argv: list[str]) -> None:
    """One `steerlab` command in its own process (as a user runs it)."""
    code = steerlab_command(argv, quiet=True, src=SOURCE["src"])
    if code != 0:
        raise SystemExit(f"fingerprint: `steerlab {' '.join(argv)}` exited {code}")


def write_keys(tmp: Path) -> dict[str, Path]:
    """The fixed test keys as plain (version 1) key files, mode 0600: a format every steerlab version reads, so an
    older checkout (--src) fingerprints the same runs."""
    import hashlib as _h
    import os

    out = {}
    for name, raw in FIXED_KEYS.items():
        path = tmp / f"{name}.key"
        doc = {"format": "steerlab-key", "version": 1, "bits": 8 * len(raw), "key_hex": raw.hex(), "kdf": None,
               "user": None, "fingerprint": _h.sha256(raw).hexdigest()[:8]}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, allow_nan=False)
        out[name] = path
    return out


def fingerprint(tmp: Path) -> dict:
    record: dict[str, dict] = {}
    data, base = tmp / "data", tmp / "base"
    run(["collect", "--task", "reach-v3", "--episodes", "4", "--quality", "mixed", "--max-steps", "40",
         "--seed", "0", "--out", str(data)])
    run(["pretrain", "--dataset", str(data), "--out", str(base), "--steps", "60", "--batch-size", "32", "--seed", "0"])
    record["pretrain"] = {"weights": weights_digest(base)}
    tiny = ["--env-steps", "240", "--warmup", "20", "--eval-every", "120", "--eval-episodes", "1", "--max-steps", "40",
            "--final-episodes", "2", "--checkpoint-every", "120", "--sac-json", '{"hidden": 32, "batch_size": 16}',
            "--no-tensorboard", "--seed", "1", "--sampler-noise-scale", "1"]  # the runs measured before `auto`
    for method in METHODS:
        out = tmp / f"ft-{method}"
        run(["finetune", str(base), "--method", method, "--env", "reach-v3", "--out", str(out), *tiny])
        record[f"finetune/{method}/n1"] = {"weights": weights_digest(out), "metrics": metrics_digest(out),
                                           "result": json_digest(out / "result.json", RESULT_KEYS)}
    out = tmp / "ft-zprl-n4"
    run(["finetune", str(base), "--method", "zprl", "--env", "reach-v3", "--out", str(out), "--n-envs", "4", *tiny])
    record["finetune/zprl/n4"] = {"weights": weights_digest(out), "metrics": metrics_digest(out),
                                  "result": json_digest(out / "result.json", RESULT_KEYS)}
    keys = write_keys(tmp)
    for method in ("prop", "sealed"):
        out = tmp / f"personal-{method}"
        run(["personalize", "--task", "point_robot", "--method", method, "--steps", "60", "--seed", "0",
             "--keys", str(keys["alice"]), str(keys["bob"]), "--out", str(out)])
        # the training log moved to the private report beside the release (issue 24): read it where it is
        private = out.with_name(out.name + ".private")
        record[f"personalize/{method}"] = {"weights": weights_digest(out),
                                           "metrics": metrics_digest(private if private.is_dir() else out)}
    report = tmp / "attack.json"
    run(["attack", str(tmp / "personal-prop"), "--key", str(keys["alice"]), "--attacks", "random_keys", "key_reading", "--quick",
         "--seed", "0", "--out", str(report)])
    record["attack/random_keys+key_reading"] = {"report": json_digest(report)}
    return record


def compare(a: dict, b: dict) -> list[str]:
    diffs = [f"{k}: only in one" for k in sorted(set(a) ^ set(b))]
    diffs += [f"{k}: differs" for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="steerlab bench fingerprint", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/fingerprint.json")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"))
    parser.add_argument("--src", default=None, metavar="DIR",
                        help="fingerprint the steerlab in this source folder (e.g. an older checkout's src/)")
    args = parser.parse_args(argv)
    SOURCE["src"] = args.src
    if args.compare:
        a, b = (json.loads(Path(p).read_text())["runs"] for p in args.compare)
        diffs = compare(a, b)
        print("\n".join(diffs) if diffs else f"identical: {len(a)} runs")
        return 1 if diffs else 0
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="steerlab-fp-") as tmp:
        runs = fingerprint(Path(tmp))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"runs": runs}, indent=1, sort_keys=True, allow_nan=False) + "\n")
    print(f"fingerprint of {len(runs)} runs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
