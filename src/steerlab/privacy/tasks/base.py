"""The personalization-task interface and its scoring (no task implementations here).

Kept apart from `tasks.py` (the registry of task implementations) so that implementations living in other
modules (`metaworld_task.py`, `rl_task.py`) and the code that scores them (`attacks.py`, `evaluate.py`) can
import the interface without importing the registry: no import cycle.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from steerlab.core.devices import place
from steerlab.privacy.tasks.protocols import HeldOutScorer, Learner, Scorer


class Task:
    name = ""
    n_users = 1
    layers: list[str] = []
    lr = 1e-3
    base_steps = 1500
    default_steps = 1500
    """Default training budget of `steerlab personalize` (gradient steps; env steps for RL tasks)."""
    rl = False
    """Learns the personal objective by RL (keyed methods then get twice the steps: steerlab.privacy.methods)."""
    concat_layer: str | None = None
    """The linear layer the key-MLP baseline appends the key to."""
    cvae_layer: str | None = None
    """The layer the CVAE baseline injects its latent into (None: no CVAE baseline for this task)."""
    scorer: Scorer = HeldOutScorer()
    """How general and personal behaviour are measured (steerlab.privacy.tasks.protocols)."""
    learner: Learner | None = None
    """How models are fitted: keyed training and per-user fitting (steerlab.privacy.tasks.protocols); None: gradient
    steps on the data source's batches (steerlab.privacy.prop.training.SupervisedLearner)."""
    base_given = False
    """The public base is given (the user's own policy, steerlab.privacy.tasks.byo), not trained here on the general
    objective: anchored keyed training then labels the general inputs too with the base's outputs, not the
    demonstrations' (which the base fits only approximately: re-fitting them moves the no-key path off the base)."""
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

    def anchor_targets(self, anchor: nn.Module, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Labels `loss` takes that carry `anchor`'s behaviour on `x` (PRoP's anchor loss,
        steerlab.privacy.prop.training.anchor_loss): its predictions, as class indices for classifiers. Tasks
        whose labels are not predictions (action chunks of a generative policy) override this."""
        out = self.predict(anchor, x)
        return out.argmax(-1) if self.output_kind == "logits" else out

    def score(self, pred: torch.Tensor, y: torch.Tensor) -> float:
        raise NotImplementedError

    def adopt_base(self, base: nn.Module) -> None:
        """Use `base` (a released public base) as this task's base: tasks whose general behaviour is
        defined by the base itself (RL: its actions) need it; data-defined tasks ignore it."""

    def train_base(self, seed: int, steps: int | None = None) -> nn.Module:
        """The public base model: trained on the general objective only."""
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = place(self.make_model())  # on the compute device of `--device` (a no-op on the CPU)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        for _ in range(steps or self.base_steps):
            x, y = self.general_batch(128, gen)
            loss = self.loss(model, x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model.eval()


def sampled_chunks(policy, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Anchor labels of a chunk policy (`Task.anchor_targets`): action chunks *sampled* from it (noise from
    `gen`), so the flow-matching loss on them teaches its action distribution, not one deterministic chunk
    (which would collapse the wrong-key policy's sampling onto it)."""
    chunk = policy.predict_chunk(x, noise=torch.randn(len(x), *policy.chunk_shape, generator=gen))
    if isinstance(chunk, torch.Tensor):  # a policy may return a tensor that requires grad: labels carry none
        return chunk.detach().float()
    return torch.as_tensor(np.asarray(chunk), dtype=torch.float32)


def scores(task: Task, run, users: int | None = None) -> dict[str, float]:
    """General and mean personal score of `run(x) -> predictions`, measured by the task's scorer."""
    return task.scorer.scores(task, run, users)
