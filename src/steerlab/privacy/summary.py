"""What `steerlab personalize` prints: a labelled table of scores and a command that runs the release.

Kept out of cli/privacy.py so the printed summary can be tested without training anything.
"""

from __future__ import annotations

import shlex

# key case (evaluate_key_cases) -> row label; the base row comes first
ROWS = (("base", "base (no personalization)"), ("correct", "with the user's key"), ("no_key", "no key"),
        ("random", "wrong key (random)"), ("near_miss_1", "wrong key (1 bit off)"))


def metric_name(task) -> str:
    """What the numbers are, in words (higher is better for every task)."""
    from steerlab.privacy.tasks.protocols import HeldOutScorer

    kind = getattr(task, "score_kind", None)  # a user's policy + datasets (privacy/tasks/byo.py)
    if kind == "accuracy":
        return f"accuracy: share of held-out actions within {task.tolerance:g} (max-norm) of the demonstrated"
    if kind == "agreement":
        return "R² of the first action vs held-out demonstrations (1 = identical, 0 = predicting the mean)"
    if not isinstance(task.scorer, HeldOutScorer):
        return "success rate of rollouts (general: the task's goal; personal: the user's goal)" if kind == "env" or \
            type(task.scorer).__name__ == "EnvSuccessScorer" else "normalized return of rollouts"
    if getattr(task, "output_kind", "") == "logits":
        return "accuracy on held-out examples (general: the shared labels; personal: the user's labels)"
    return "R² on held-out examples (1 = exact, 0 = predicting the mean)"


def score_table(cases: dict, base: dict, metric: str) -> str:
    """Rows: base, with the key, no key, wrong keys; columns: general and personal behaviour."""
    scores = {"base": base, **cases}
    width = max(len(label) for _, label in ROWS)
    lines = [f"metric: {metric}", f"{'policy':<{width}}  {'general':>8}  {'personal':>8}"]
    lines.append("-" * len(lines[-1]))
    for case, label in ROWS:
        if case in scores:
            d = scores[case]
            lines.append(f"{label:<{width}}  {d['general']:>8.3f}  {d['personal']:>8.3f}")
    lines.append("general: the shared behaviour; personal: the user's own. The key's row should lead on "
                 "personal; no key and wrong keys should stay at the base.")
    return "\n".join(lines)


def run_it(out, key_file: str, env: str | None) -> str:
    """A `steerlab evaluate` line that works as printed: `--env` when the release names no environment."""
    cmd = ["steerlab", "evaluate", str(out), "--key", str(key_file)]
    if env:
        cmd += ["--env", env]
    return " ".join(shlex.quote(c) for c in cmd)


def release_env(out, personal: list[str] | None) -> str | None:
    """The environment `steerlab evaluate` must be told for the release at `out`: None when its base records
    one; else the env the user's demonstrations were recorded in (`steerlab collect` writes its id)."""
    import json
    from pathlib import Path

    from steerlab.core.checkpoint import read_json
    from steerlab.core.errors import UserError
    from steerlab.data.dataset import STEERLAB_META
    from steerlab.envs.registry import checkpoint_env, resolve_env

    if checkpoint_env(read_json(Path(out) / "config.json")):
        return None
    for folder in personal or []:
        path = Path(folder) / STEERLAB_META
        meta = json.loads(path.read_text()) if path.is_file() else {}
        for env in (meta.get("env_id"), meta.get("task")):  # a task string may be a description, not an env
            try:
                if env and resolve_env(env):
                    return env
            except UserError:
                continue
    return None
