"""Bring your own policy and preference: personalize any trainable steerlab policy from demonstrations.

`DatasetTask` is a personalization task (steerlab.privacy.tasks.Task) configured from

* the public base: any policy a checkpoint loads (`steerlab.core.checkpoint.load_policy`) that meets
  `ImitationPolicy` — it can be trained by imitation (`compute_loss(obs, chunk)`) and acts by chunks
  (`predict_chunk(obs, noise=...)`, `chunk_shape`);
* the data source: a general dataset (the shared behaviour; by default the one the base was trained on)
  and one personal dataset per user (the user's demonstrations), LeRobotDataset v3 folders;
* the scorer (`score`; `agreement` and `accuracy` are steerlab.privacy.protocols.HeldOutScorer on the
  held-out frames, `env` is steerlab.privacy.scorers.EnvSuccessScorer):
    - `agreement`: R² = 1 − MSE / Var of the policy's first action against held-out demonstrations'
      actions (the last `holdout` share of each dataset's episodes is never trained on);
    - `accuracy`: the share of held-out frames whose action is within `tolerance` (max-norm) of the
      demonstrated one;
    - `env`: success rate in the base's environment; user u's goal is moved by that user's offset
      (recorded by `steerlab collect --goal-offset`, or given explicitly).

Evaluation is deterministic: the flow integrates from zero noise.
"""

from __future__ import annotations

import copy
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from steerlab.core.errors import UserError
from steerlab.privacy.sealed import policy_of
from steerlab.privacy.task import Task, sampled_chunks

SCORES = ("agreement", "accuracy", "env")


@runtime_checkable
class ImitationPolicy(Protocol):
    chunk_shape: tuple[int, int]

    def compute_loss(self, obs: torch.Tensor, chunk: torch.Tensor): ...

    def predict_chunk(self, obs, *, noise=None): ...


def _split(ds, holdout: float):
    """(train frame indices, held-out frame indices): the last episodes are held out (none if only one)."""
    slices = ds.episode_slices()
    n_test = int(round(holdout * len(slices))) if len(slices) > 1 else 0
    n_test = min(max(n_test, 1 if holdout > 0 and len(slices) > 1 else 0), len(slices) - 1)
    train = np.concatenate([np.arange(s.start, s.stop) for s in slices[: len(slices) - n_test]])
    test = (np.concatenate([np.arange(s.start, s.stop) for s in slices[len(slices) - n_test:]]) if n_test
            else train)
    return train, test


class _Frames:
    """Observations and action chunks of one dataset, split into training and held-out frames."""

    def __init__(self, ds, horizon: int, holdout: float):
        from steerlab.data.dataset import chunk_indices

        self.obs = torch.as_tensor(ds.observations)
        self.chunks = torch.as_tensor(ds.actions)[torch.as_tensor(chunk_indices(ds, horizon))]
        self.train, self.test = (torch.as_tensor(i) for i in _split(ds, holdout))

    def batch(self, n: int, gen: torch.Generator):
        idx = self.train[torch.randint(0, len(self.train), (n,), generator=gen)]
        return self.obs[idx], self.chunks[idx]

    def held_out(self):
        return self.obs[self.test], self.chunks[self.test][:, 0]


class DatasetTask(Task):
    name = "dataset"

    def __init__(self, base: nn.Module, general, personal: list, score: str = "agreement", holdout: float = 0.2,
                 layers: list[str] | None = None, tolerance: float = 0.1, goal_offsets: list | None = None,
                 eval_episodes: int = 10, lr: float = 1e-3, default_steps: int = 1000, env_task: str | None = None,
                 env_max_steps: int = 200):
        if not isinstance(base, ImitationPolicy) or not isinstance(base, nn.Module):
            raise UserError(f"{type(base).__name__} cannot be personalized: it needs compute_loss(obs, chunk), "
                            f"predict_chunk(obs, noise=...) and chunk_shape (a torch module; see docs/privacy.md)")
        if score not in SCORES:
            raise UserError(f"--score must be one of {', '.join(SCORES)}, got {score!r}")
        if not personal:
            raise UserError("pass one personal dataset per user")
        if not 0 <= holdout < 1:
            raise UserError(f"holdout must be in [0, 1), got {holdout}")
        self.base_policy = base.eval()
        self.n_users, self.lr, self.default_steps = len(personal), lr, default_steps
        self.tolerance, self.score_kind = tolerance, score
        self.env_task, self.env_max_steps = env_task, env_max_steps  # `env` scoring: where the base acts
        horizon, self.action_dim = base.chunk_shape
        for what, ds in [("general", general)] + [(f"personal #{i + 1}", d) for i, d in enumerate(personal)]:
            self._check_fits(what, ds)
        self.general = _Frames(general, horizon, holdout)
        self.personal = [_Frames(d, horizon, holdout) for d in personal]
        linear = [n for n, m in base.named_modules() if isinstance(m, nn.Linear)]
        if not linear:
            raise UserError(f"{type(base).__name__} has no nn.Linear layer to personalize")
        self.layers = list(layers) if layers else [linear[1] if len(linear) > 1 else linear[0]]
        self.concat_layer = linear[0]
        self.cvae_layer = self.layers[0]
        if score == "env":
            self.scorer = self._env_scorer(personal, goal_offsets, eval_episodes)

    def _check_fits(self, what: str, ds) -> None:
        obs = torch.as_tensor(ds.observations[:1])
        try:
            out = self.base_policy.predict_chunk(obs, noise=torch.zeros(1, *self.base_policy.chunk_shape))
        except (ValueError, RuntimeError) as err:
            raise UserError(f"the {what} dataset does not fit the policy: {' '.join(str(err).split())}") from None
        if ds.actions.shape[1] != np.asarray(out).shape[-1]:
            raise UserError(f"the {what} dataset has {ds.actions.shape[1]}-dim actions, the policy "
                            f"{np.asarray(out).shape[-1]}")

    def _env_scorer(self, personal: list, goal_offsets, episodes: int):
        from steerlab.privacy.scorers import EnvSuccessScorer

        if not self.env_task:
            raise UserError("--score env needs the environment the base acts in: a base checkpoint that records "
                            "it, or env_task=")
        if goal_offsets is None:
            goal_offsets = [d.info.get("steerlab", {}).get("goal_offset") for d in personal]
            if any(o is None for o in goal_offsets):
                raise UserError("--score env needs each user's goal: collect the personal demos with "
                                "`steerlab collect --goal-offset DX DY DZ`, or pass --goal-offset per user")
        if len(goal_offsets) != len(personal):
            raise UserError(f"{len(goal_offsets)} goal offsets for {len(personal)} personal datasets")
        return EnvSuccessScorer(self.env_task, goal_offsets, episodes, max_steps=self.env_max_steps,
                                action_dim=self.action_dim)

    # ---------------------------------------------------------------- the Task interface
    def make_model(self) -> nn.Module:
        return copy.deepcopy(self.base_policy)

    def train_base(self, seed: int, steps: int | None = None) -> nn.Module:
        return copy.deepcopy(self.base_policy).eval()  # the user's base is given, not trained here

    def general_batch(self, n, gen):
        return self.general.batch(n, gen)

    def personal_batch(self, user, n, gen):
        return self.personal[user].batch(n, gen)

    def test_general(self):
        return self.general.held_out()

    def test_personal(self, user):
        return self.personal[user].held_out()

    def loss(self, model, x, y):
        out = policy_of(model).compute_loss(x, y)
        return out[0] if isinstance(out, tuple) else out

    def anchor_targets(self, anchor, x, gen):
        return sampled_chunks(policy_of(anchor), x, gen)

    def predict(self, model, x):
        policy = policy_of(model)
        chunk = policy.predict_chunk(x, noise=torch.zeros(len(x), *policy.chunk_shape))
        return torch.as_tensor(np.asarray(chunk))[:, 0]

    def score(self, pred, y):
        if self.score_kind == "accuracy":
            return float(((pred - y).abs().amax(-1) <= self.tolerance).float().mean())
        var = y.var(0, unbiased=False).mean()
        return float(1.0 - (pred - y).pow(2).mean() / var.clamp_min(1e-12))

