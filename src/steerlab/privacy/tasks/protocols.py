"""The three pieces personalization is built from, as explicit protocols.

A personalization *task* joins a model family with:

* a **data source** — general and per-user personal training batches (`DataSource`);
* a **scorer** — how general and personal behaviour are measured, higher is better (`Scorer`):
  held-out accuracy / R² (`HeldOutScorer`), success of env rollouts with the user's goal, action
  agreement on held-out personal demonstrations;
* a **learner** — how a model is fitted: keyed training of PRoP-style models (`fit_keyed`) and
  plain personal fitting of chosen parameters (`fit_personal`, used by fine-tuning, LoRA and sealed
  adapters). `steerlab.privacy.prop.training.SupervisedLearner` (a task's `learner = None`) does gradient
  steps on the data source's batches; RL tasks bring PPO (`steerlab.privacy.tasks.panda_rl.PPOLearner`).

A task names its scorer and learner as attributes (`task.scorer`, `task.learner`); nothing is found by
probing for optional methods. The built-in recipes (`steerlab.privacy.tasks.TASKS`) and a user's own
policy + datasets (`steerlab.privacy.tasks.byo.DatasetTask`) are configurations of these pieces.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class DataSource(Protocol):
    n_users: int

    def general_batch(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]: ...

    def personal_batch(self, user: int, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class Scorer(Protocol):
    def scores(self, task, run, users: int | None = None) -> dict[str, float]:
        """{'general': ..., 'personal': mean over the first `users` users} of `run(x) -> predictions`."""

    def general_score(self, task, run) -> float:
        """The score on the shared (general) objective."""

    def personal_score(self, task, run, user: int) -> float:
        """The score on one user's objective."""


@runtime_checkable
class Learner(Protocol):
    def fit_keyed(self, model, task, users: list, cfg, extra_loss=None) -> list[dict]:
        """Train a KeyedModel: each user's objective under its key, the general one under every other key
        (+ `extra_loss(model, task, step, gen)` at every step, if given)."""

    def fit_personal(self, model, params: list, task, user: int, cfg) -> None:
        """Train `params` of `model` on one user's objective only (no keys)."""


class HeldOutScorer:
    """Scores on the task's held-out sets: `task.test_general()`, `task.test_personal(u)`, `task.score`."""

    def scores(self, task, run, users: int | None = None) -> dict[str, float]:
        personal = float(np.mean([self.personal_score(task, run, u) for u in range(users or task.n_users)]))
        return {"general": self.general_score(task, run), "personal": personal}

    @torch.no_grad()
    def general_score(self, task, run) -> float:
        xg, yg = task.test_general()
        return task.score(run(xg), yg)

    @torch.no_grad()
    def personal_score(self, task, run, user: int) -> float:
        xp, yp = task.test_personal(user)
        return task.score(run(xp), yp)
