"""The personalization-task interface and its scoring (no task implementations here).

Kept apart from `tasks.py` (the registry of task implementations) so that implementations living in other
modules (`metaworld_task.py`, `rl_task.py`) and the code that scores them (`attacks.py`, `evaluate.py`) can
import the interface without importing the registry: no import cycle.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Task:
    name = ""
    n_users = 1
    layers: list[str] = []
    lr = 1e-3
    base_steps = 1500
    output_kind = "regression"
    """What `predict` returns: "regression" (targets, actions) or "logits" (class scores); attacks measure
    divergence from the base as squared deviation or as KL accordingly."""

    def make_model(self) -> nn.Module:
        raise NotImplementedError

    def general_batch(self, n: int, gen: torch.Generator):
        raise NotImplementedError

    def personal_batch(self, user: int, n: int, gen: torch.Generator):
        raise NotImplementedError

    def test_general(self):
        raise NotImplementedError

    def test_personal(self, user: int):
        raise NotImplementedError

    def predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(x)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, pred: torch.Tensor, y: torch.Tensor) -> float:
        raise NotImplementedError

    def train_base(self, seed: int, steps: int | None = None) -> nn.Module:
        """The public base model: trained on the general objective only."""
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = self.make_model()
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        for _ in range(steps or self.base_steps):
            x, y = self.general_batch(128, gen)
            loss = self.loss(model, x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model.eval()


def scores(task: Task, run, users: int | None = None) -> dict[str, float]:
    """General and mean personal score of `run(x) -> predictions` on the held-out sets (rollouts for
    tasks that define `rollout_scores`)."""
    if hasattr(task, "rollout_scores"):
        return task.rollout_scores(run)
    with torch.no_grad():
        xg, yg = task.test_general()
        general = task.score(run(xg), yg)
        personal = float(np.mean([task.score(run(xp), yp) for xp, yp in
                                  (task.test_personal(u) for u in range(users or task.n_users))]))
    return {"general": general, "personal": personal}
