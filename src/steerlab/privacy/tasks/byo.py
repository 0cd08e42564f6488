"""Bring your own policy and preference: personalize any trainable steerlab policy from demonstrations.

`DatasetTask` is a personalization task (steerlab.privacy.tasks.Task) configured from

* the public base: any policy `steerlab.core.checkpoint.load_policy` loads (a checkpoint folder or
  `module:factory`) that meets `ImitationPolicy` — a torch module that can be trained by imitation
  (`compute_loss(obs, chunk)`) and acts by chunks (`predict_chunk(obs, noise=...)`, `chunk_shape`);
  `check_personalizable` names the first missing piece (docs/protocol.md, "personalization level");
* the data source: a general dataset (the shared behaviour; by default the one the base was trained on)
  and one personal dataset per user (the user's demonstrations), LeRobotDataset v3 folders;
* the scorer (`score`; `agreement` and `accuracy` are steerlab.privacy.tasks.protocols.HeldOutScorer on the
  held-out frames, `env` is steerlab.privacy.tasks.scorers.EnvSuccessScorer):
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

from steerlab.core.devices import place
from steerlab.core.errors import UserError
from steerlab.privacy.sealed.blobs import policy_of
from steerlab.privacy.tasks.base import Task, sampled_chunks

SCORES = ("agreement", "accuracy", "env")


@runtime_checkable
class ImitationPolicy(Protocol):
    chunk_shape: tuple[int, int]
    """(horizon, action_dim) of the chunks `predict_chunk` returns and `compute_loss` is trained on."""

    def compute_loss(self, obs: torch.Tensor, chunk: torch.Tensor):
        """Imitation loss of demonstrated chunks (B, horizon, action_dim) given observations (B, obs_dim): a
        scalar tensor (or a tuple whose first item is one) that gradients flow through."""

    def predict_chunk(self, obs, *, noise=None):
        """Action chunks (B, horizon, action_dim) for observations (B, obs_dim), from `noise` of shape
        (B, *chunk_shape) (zeros: the deterministic chunk); a tensor (gradients are cut here) or an array."""


def chunk_array(out) -> torch.Tensor:
    """A policy's `predict_chunk` output as a float tensor cut from the autograd graph: a policy may return
    a numpy array or a tensor that requires grad (personalization never differentiates through it)."""
    if isinstance(out, torch.Tensor):
        return out.detach().float()
    return torch.as_tensor(np.asarray(out), dtype=torch.float32)


def check_personalizable(policy) -> None:
    """One line naming the first piece `policy` lacks for `steerlab personalize --base` (ImitationPolicy)."""
    name = type(policy).__name__
    if not isinstance(policy, nn.Module):
        raise UserError(f"{name} cannot be personalized: it must be a torch.nn.Module (its nn.Linear layers are "
                        f"what gets personalized; docs/protocol.md, personalization level)")
    for attr in ("compute_loss", "predict_chunk"):
        if not callable(getattr(policy, attr, None)):
            raise UserError(f"{name} cannot be personalized: it lacks the method {attr}(...) (docs/protocol.md, "
                            f"personalization level)")
    shape = getattr(policy, "chunk_shape", None)
    if not (isinstance(shape, tuple | list) and len(shape) == 2 and all(isinstance(d, int) and d > 0 for d in shape)):
        raise UserError(f"{name} cannot be personalized: it lacks chunk_shape = (horizon, action_dim), two positive "
                        f"ints (got {shape!r}; docs/protocol.md, personalization level)")
    if not any(isinstance(m, nn.Linear) for m in policy.modules()):
        raise UserError(f"{name} has no nn.Linear layer to personalize")


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
    base_given = True  # the user's policy is the public base: wrong keys / no key are held at its outputs

    def __init__(self, base: nn.Module, general, personal: list, score: str = "agreement", holdout: float = 0.2,
                 layers: list[str] | None = None, tolerance: float = 0.1, goal_offsets: list | None = None,
                 eval_episodes: int = 10, lr: float = 1e-3, default_steps: int = 1000, env_task: str | None = None,
                 env_max_steps: int = 200):
        check_personalizable(base)
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
        self.layers = list(layers) if layers else [linear[1] if len(linear) > 1 else linear[0]]
        self.concat_layer = linear[0]
        self.cvae_layer = self.layers[0]
        if score == "env":
            self.scorer = self._env_scorer(personal, goal_offsets, eval_episodes)

    def _check_fits(self, what: str, ds) -> None:
        """The dataset's frames go through predict_chunk and compute_loss, before any training."""
        policy, horizon = self.base_policy, self.base_policy.chunk_shape[0]
        obs = torch.as_tensor(ds.observations[:2])
        try:
            with torch.no_grad():
                out = chunk_array(policy.predict_chunk(obs, noise=torch.zeros(len(obs), *policy.chunk_shape)))
        except (ValueError, RuntimeError, TypeError) as err:
            raise UserError(f"the {what} dataset does not fit the policy's predict_chunk: "
                            f"{' '.join(str(err).split())}") from None
        if tuple(out.shape) != (len(obs), *policy.chunk_shape):
            raise UserError(f"{type(policy).__name__}.predict_chunk returned shape {tuple(out.shape)} for "
                            f"{len(obs)} observations; chunk_shape says ({len(obs)}, {policy.chunk_shape[0]}, "
                            f"{policy.chunk_shape[1]})")
        if ds.actions.shape[1] != out.shape[-1]:
            raise UserError(f"the {what} dataset has {ds.actions.shape[1]}-dim actions, the policy {out.shape[-1]}")
        chunk = torch.as_tensor(ds.actions[:1]).expand(len(obs), horizon, -1).contiguous()
        try:
            loss = self.loss(policy, obs, chunk)
        except (ValueError, RuntimeError, TypeError) as err:
            raise UserError(f"{type(policy).__name__}.compute_loss failed on the {what} dataset's frames: "
                            f"{' '.join(str(err).split())}") from None
        if not (isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.requires_grad):
            raise UserError(f"{type(policy).__name__}.compute_loss must return a scalar tensor that gradients flow "
                            f"through (or a tuple starting with one), got "
                            f"{type(loss).__name__}{'' if not isinstance(loss, torch.Tensor) else tuple(loss.shape)}")

    def _env_scorer(self, personal: list, goal_offsets, episodes: int):
        from steerlab.privacy.tasks.scorers import EnvSuccessScorer

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
        return place(copy.deepcopy(self.base_policy)).eval()  # the user's base is given, not trained here

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
        with torch.no_grad():  # labels, not a path for gradients
            return sampled_chunks(policy_of(anchor), x, gen)

    def predict(self, model, x):
        policy = policy_of(model)
        return chunk_array(policy.predict_chunk(x, noise=torch.zeros(len(x), *policy.chunk_shape)))[:, 0]

    def score(self, pred, y):
        if self.score_kind == "accuracy":
            return float(((pred - y).abs().amax(-1) <= self.tolerance).float().mean())
        var = y.var(0, unbiased=False).mean()
        return float(1.0 - (pred - y).pow(2).mean() / var.clamp_min(1e-12))

