"""What every attack shares: the attacker's view of a released keyed model, its budget, and batched runs.

The attacker holds the released keyed model (weights, key encoders, architecture) and the public base,
can run the model with any key, any encoder input or any gates δ, and has public inputs (the general
data distribution). It has no key and no personal data. An attack returns `Found`: candidate gates
(one row per attempt, per keyed layer) or, for attacks that edit weights, candidate models.

Divergence from the base is the attacks' only signal (no personal data): KL(base ‖ model) over the
class distribution for classifiers, and the mean squared deviation over the base outputs' variance for
regressors and policies (`Task.output_kind`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from steerlab.privacy.prop.keyed import KeyedModel


@dataclass
class AttackBudget:
    """How much search each attack may spend (the report states it)."""

    restarts: int = 256
    """Random starts of every gradient attack, and random keys tried by key search."""
    iters: int = 60
    """Adam steps per gradient start."""
    lr: float = 0.1
    """Adam step size of the gradient attacks."""
    evo_runs: int = 64
    """Independent evolutionary runs over binary encoder inputs."""
    evo_population: int = 16
    """Individuals per evolutionary run."""
    evo_generations: int = 30
    """Generations per evolutionary run."""
    probe: int = 32
    """Public inputs the attacks measure divergence on."""
    near_per_distance: int = 16
    """Near-miss keys per Hamming distance (robustness check; uses the user's key)."""
    diversity_weight: float = 1.0
    """Weight of the repulsion between starts in the diverse gate-space attack."""
    rollout_verify: int | None = 16
    """Tasks scored by rollouts (Meta-World, PandaReach): rank every attempt by how close its actions on
    public states come to the correct key's (the evaluator's proxy), score the `rollout_verify` best plus
    the best `ROLLOUT_PER_ATTACK` of each attack by rollouts, count the rest as not recovered (best-of-N
    and share are then lower bounds; the proxy's own share is reported beside them). None: every attempt
    by rollouts (slow: one rollout set per attempt)."""

    @classmethod
    def quick(cls) -> AttackBudget:
        """Tests and smoke runs: same attacks, fewer starts."""
        return cls(restarts=32, iters=30, evo_runs=8, evo_population=8, evo_generations=10, probe=16,
                   near_per_distance=4, rollout_verify=4)


@dataclass
class Found:
    """An attack's attempts: per-layer gate rows (C, n) and/or whole candidate models."""

    deltas: dict[str, torch.Tensor] = field(default_factory=dict)
    models: list[nn.Module] = field(default_factory=list)
    evaluations: int = 0
    """Model evaluations the search spent (forward passes over the probe, per candidate)."""

    def __len__(self) -> int:
        return (len(next(iter(self.deltas.values()))) if self.deltas else 0) + len(self.models)


class Target:
    """The attacker's view: released model, public base, task (public inputs only) and a fixed probe."""

    def __init__(self, model: KeyedModel, base: nn.Module, task, budget: AttackBudget, seed: int = 0,
                 user_bits: torch.Tensor | None = None):
        self.model, self.base, self.task, self.budget, self.seed = model, base, task, budget, seed
        self.user_bits = user_bits  # only for attacks flagged `uses_key` (robustness checks, not the attacker)
        self.kind = getattr(task, "output_kind", "regression")
        gen = torch.Generator().manual_seed(seed)
        self.probe, _ = task.general_batch(budget.probe, gen)
        model.set_key(None)
        with torch.no_grad():
            self.base_out = task.predict(base, self.probe)
            self.scale = self.base_out.var(0, unbiased=False).mean().clamp_min(1e-8)
        self.expand_at: str | None = None
        self.expand_at = self._expansion_point()

    def _expansion_point(self) -> str | None:
        """The keyed layer that runs first, when batching candidates there is exact (see `outputs`)."""
        order: list[str] = []
        hooks = [layer.register_forward_pre_hook(lambda m, a, n=name: order.append(n))
                 for name, layer in self.model.keyed.items()]
        try:
            with torch.no_grad():
                self.task.predict(self.model, self.probe[:2])
        finally:
            for h in hooks:
                h.remove()
        if not order:
            return None
        self.expand_at = order[0]
        gen = torch.Generator().manual_seed(0)
        trial = {n: torch.rand(3, d, generator=gen) * 2 - 1 for n, d in self.model.gate_dims().items()}
        try:
            with torch.no_grad():
                fast = self.outputs(trial, self.probe[:4])
        except Exception:  # noqa: BLE001 — the widened batch meets code sized by the input batch (a residual
            # connection, a sampler's noise sized len(x) raising UserError): no shortcut, the plain way is exact
            return None
        self.expand_at = None
        with torch.no_grad():
            slow = self.outputs(trial, self.probe[:4])
        return order[0] if fast.shape == slow.shape and torch.allclose(fast, slow, atol=1e-5, rtol=1e-4) else None

    def generator(self, salt: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000 + salt)

    # ------------------------------------------------------------------ divergence (the attacker's signal)
    def divergence(self, out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Per-candidate divergence of outputs `out` (C, P, ...) from `ref` (P, ...) or (C, P, ...)."""
        if self.kind == "logits":
            logp_ref = F.log_softmax(ref, -1)
            kl = (logp_ref.exp() * (logp_ref - F.log_softmax(out, -1))).sum(-1)
            return kl.flatten(1).mean(1)
        return (out - ref).pow(2).flatten(1).mean(1) / self.scale

    def pairwise_divergence(self, out: torch.Tensor) -> torch.Tensor:
        """(C, C) divergences between candidates' outputs (the diversity term)."""
        if self.kind == "logits":
            logp = F.log_softmax(out, -1).flatten(1, -2)  # (C, P, K)
            p = logp.exp()
            neg_entropy = (p * logp).sum((1, 2))
            cross = torch.einsum("ipk,jpk->ij", p, logp)
            return (neg_entropy[:, None] - cross) / logp.shape[1]
        flat = out.flatten(1)
        return torch.cdist(flat, flat).pow(2) / flat.shape[1] / self.scale

    # ------------------------------------------------------------------ batched runs
    @contextlib.contextmanager
    def frozen(self):
        """The model's own parameters are constants for the attacker's optimisation."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        was_training = self.model.training
        self.model.eval()
        self.model.set_key(None)
        for p in params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in params:
                p.requires_grad_(True)
            self.model.train(was_training)

    def outputs(self, deltas: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Outputs (C, len(x), ...) of the model under each of C gate rows, all in one batch.

        Everything before the first keyed layer does not depend on δ, so when that is exact (checked once
        against the plain way, `_expansion_point`) the inputs run once up to that layer and are repeated
        there for the C candidates, instead of running the whole network C times (the digits CNN's
        convolutions are most of its cost)."""
        c = len(next(iter(deltas.values())))
        rows = {n: d.repeat_interleave(len(x), 0) for n, d in deltas.items()}

        def widen(_module, args):
            return (args[0].repeat(c, *([1] * (args[0].ndim - 1))), *args[1:])

        hook = self.model.keyed[self.expand_at].register_forward_pre_hook(widen) if self.expand_at else None
        try:
            with self.model.use_deltas(rows):
                out = self.task.predict(self.model, x if hook else x.repeat(c, *([1] * (x.ndim - 1))))
        finally:
            if hook is not None:
                hook.remove()
        return out.reshape(c, len(x), *out.shape[1:])

    @torch.no_grad()
    def outputs_chunked(self, deltas: dict[str, torch.Tensor], x: torch.Tensor, rows: int = 32_768) -> torch.Tensor:
        c = len(next(iter(deltas.values())))
        step = max(1, rows // len(x))
        return torch.cat([self.outputs({n: d[i:i + step] for n, d in deltas.items()}, x) for i in range(0, c, step)])

    def encoder_gates(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gates of every keyed layer for encoder inputs (C, N) in [0, 1] (the HKDF output, or a relaxation)."""
        return {n: layer.encoder(inputs) for n, layer in self.model.keyed.items()}

    def ascend(self, leaves: list[torch.Tensor], to_deltas: Callable, project: Callable | None = None,
               diversity: float = 0.0) -> list[torch.Tensor]:
        """Adam ascent of each row's divergence from the base on the probe, all rows at once (rows are
        independent: the summed objective's gradient for row i depends on row i only, unless `diversity`
        adds a repulsion between rows). Returns the final leaves."""
        leaves = [t.clone().requires_grad_(True) for t in leaves]
        opt = torch.optim.Adam(leaves, lr=self.budget.lr)
        with self.frozen():
            for _ in range(self.budget.iters):
                out = self.outputs(to_deltas(leaves), self.probe)
                objective = self.divergence(out, self.base_out).sum()
                if diversity:
                    objective = objective + diversity * self.pairwise_divergence(out).mean(1).sum()
                opt.zero_grad()
                (-objective).backward()
                opt.step()
                if project is not None:
                    with torch.no_grad():
                        project(leaves)
        return [t.detach() for t in leaves]

    @torch.no_grad()
    def fitness(self, inputs: torch.Tensor, rows: int = 32_768) -> torch.Tensor:
        """Divergence from the base of encoder inputs (C, N) (for search without gradients)."""
        self.model.set_key(None)
        step = max(1, rows // len(self.probe))
        parts = []
        for i in range(0, len(inputs), step):
            out = self.outputs(self.encoder_gates(inputs[i:i + step]), self.probe)
            parts.append(self.divergence(out, self.base_out))
        return torch.cat(parts)
