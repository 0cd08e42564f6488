"""Why do wrong keys drift toward the personal goal on Meta-World reach (MLP policy), and does the anchor fix it?

For each seed: the public base, PRoP with v1's loss (`prop_unanchored`) and PRoP (anchored), trained exactly as in
steerlab.bench.privacy (same task data, base seed, user key and step budget).

* lean: on the general demos' states and on the personal demos' states, the mean of (action under no key /
  a random key − the base's action), projected on the unit vector of the user's goal offset (> 0: the
  wrong-key policy leans toward the personal goal);
* rollouts (`--episodes E`): personal success (hand within 5 cm of the user's goal) of the base, and of PRoP
  and prop with no key and with the user's key, on the same E evaluation episodes (seed 0) for every
  policy, so differences are paired by seed and by episode.

    steerlab bench privacy_drift --seeds 0 1 2 3 4 5 --episodes 30   # -> benchmarks/results/privacy_drift.json

Seeds already in the JSON with the same episode count are skipped (the file is rewritten after each seed).
"""
import argparse
import json
import sys

import numpy as np
import torch
from tqdm.auto import tqdm

from steerlab.bench.common import RESULTS, stderr
from steerlab.core.io import atomic_write_json
from steerlab.privacy.keys import UserKey
from steerlab.privacy.methods import PersonalizeConfig, build_personalized
from steerlab.privacy.tasks.metaworld import user_offset
from steerlab.privacy.tasks.registry import make_task
from steerlab.privacy.tasks.scorers import EnvSuccessScorer

OUT = RESULTS / "privacy_drift.json"
METHODS = ("prop_unanchored", "prop")


def lean(p, task, base, bits) -> dict:
    direction = torch.as_tensor(user_offset(0)[:3] / np.linalg.norm(user_offset(0)[:3]))
    xg, xp = task.general[0], task.personal[0][0]
    with torch.no_grad():
        bg, bp = base(xg)[:, :3], base(xp)[:, :3]
        run = p.runner(bits)
        return {"general_states": float(((run(xg)[:, :3] - bg) @ direction).mean()),
                "personal_states": float(((run(xp)[:, :3] - bp) @ direction).mean())}


def run_seed(task, seed: int, episodes: int) -> dict:
    scorer = EnvSuccessScorer(task.task_id, [user_offset(0)], episodes)
    base = task.train_base(seed)
    users = [UserKey(np.random.default_rng(1_000 + seed).bytes(16))]  # as steerlab.bench.privacy: build()
    random_key = UserKey(np.random.default_rng(5_000 + seed).bytes(16))  # a wrong key, seeded
    row = {"seed": seed, "episodes": episodes,
           "base_personal": scorer.personal_score(task, lambda x: task.predict(base, x), 0)}
    for m in METHODS:
        p = build_personalized(m, task, base, users, PersonalizeConfig(steps=1000, seed=seed))
        row[m] = {"lean": {"no_key": lean(p, task, base, None), "random": lean(p, task, base, random_key.bits())},
                  "no_key_personal": scorer.personal_score(task, p.runner(None), 0),
                  "correct_personal": scorer.personal_score(task, p.runner(users[0].bits()), 0)}
    return row


def summary(rows: list[dict]) -> dict:
    out = {"seeds": [r["seed"] for r in rows], "episodes": sorted({r["episodes"] for r in rows})}
    base = np.array([r["base_personal"] for r in rows])
    for m in METHODS:
        nk = np.array([r[m]["no_key_personal"] for r in rows])
        lean_p = np.array([r[m]["lean"]["no_key"]["personal_states"] for r in rows])
        out[m] = {"no_key_personal_minus_base": float((nk - base).mean()),
                  "no_key_personal_minus_base_stderr": stderr(nk - base),
                  "correct_personal": float(np.mean([r[m]["correct_personal"] for r in rows])),
                  "correct_personal_stderr": stderr(np.array([r[m]["correct_personal"] for r in rows])),
                  "lean_personal_states": float(lean_p.mean())}
    d = np.array([r["prop"]["no_key_personal"] - r["prop_unanchored"]["no_key_personal"] for r in rows])
    out["anchor_minus_unanchored_no_key_personal"] = float(d.mean())
    out["anchor_minus_unanchored_no_key_personal_stderr"] = stderr(d)
    c = np.array([r["prop"]["correct_personal"] - r["prop_unanchored"]["correct_personal"] for r in rows])
    out["anchor_minus_unanchored_correct_personal"] = float(c.mean())
    out["anchor_minus_unanchored_correct_personal_stderr"] = stderr(c)
    out["base_personal"] = float(base.mean())
    return out


def main(argv: list[str] | None = None) -> int:
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(prog="steerlab bench privacy_drift", description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--episodes", type=int, default=30)
    args = ap.parse_args(argv)
    if args.episodes <= 0:
        raise SystemExit("--episodes must be positive")
    previous = json.loads(OUT.read_text()) if OUT.is_file() else {}
    rows = [r for r in previous.get("rows", []) if r["episodes"] == args.episodes]
    done = {r["seed"] for r in rows}
    task = make_task("metaworld_reach_mlp")  # the task's demos do not depend on the seed: built once
    for seed in tqdm([s for s in args.seeds if s not in done], desc="drift seeds"):
        rows.append(run_seed(task, seed, args.episodes))
        rows.sort(key=lambda r: r["seed"])
        atomic_write_json(OUT, {"rows": rows, "summary": summary(rows)})
        print(json.dumps(summary(rows), allow_nan=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
