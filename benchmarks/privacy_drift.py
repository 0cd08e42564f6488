"""Why do wrong keys drift toward the personal goal on Meta-World reach (MLP policy)?

For each seed: the public base, PRoP and PRoP with the anchor loss (`prop_anchor`), trained exactly as in
benchmarks/privacy.py. On the general demos' states and on the personal demos' states, the mean of
(action under no key / a random key − the base's action), projected on the unit vector of the user's
goal offset: > 0 means the wrong-key policy leans toward the personal goal.

    python benchmarks/privacy_drift.py 0,1,2,3     # -> benchmarks/results/privacy_drift.json
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
from steerlab.privacy.keys import UserKey  # noqa: E402
from steerlab.privacy.metaworld_task import user_offset  # noqa: E402
from steerlab.privacy.methods import MethodConfig, build_personalized  # noqa: E402
from steerlab.privacy.tasks import make_task  # noqa: E402

seeds = [int(s) for s in sys.argv[1].split(",")]
out = {}
for seed in seeds:
    task = make_task("metaworld_reach_mlp")
    base = task.train_base(seed)
    rng = np.random.default_rng(1_000 + seed)
    users = [UserKey(rng.bytes(16))]
    direction = torch.as_tensor(user_offset(0)[:3] / np.linalg.norm(user_offset(0)[:3]))
    xg, xp = task.general[0], task.personal[0][0]
    with torch.no_grad():
        bg, bp = base(xg)[:, :3], base(xp)[:, :3]
    for m in ("prop", "prop_anchor"):
        p = build_personalized(m, task, base, users, MethodConfig(steps=1000, seed=seed))
        row = {}
        random_key = UserKey(np.random.default_rng(5_000 + seed).bytes(16))  # a wrong key, seeded
        for case, bits in (("no_key", None), ("random", random_key.bits())):
            run = p.runner(bits)
            with torch.no_grad():
                row[case] = {"general_states": float(((run(xg)[:, :3] - bg) @ direction).mean()),
                             "personal_states": float(((run(xp)[:, :3] - bp) @ direction).mean())}
        out.setdefault(m, []).append(row)
        print(seed, m, row, flush=True)
out["seeds"] = seeds
(Path(__file__).resolve().parent / "results" / "privacy_drift.json").write_text(json.dumps(out, indent=1))
