"""Personalization tasks: what is general, what is personal, and how each is scored (higher = better).

Every task exposes the same small interface, used by keyed training, the baselines, the attacks and
the benchmark: `make_model`, `layers` (what PRoP keys), `general_batch` / `personal_batch` (training),
`test_general` / `test_personal` (held-out), `loss`, `predict`, `score`.

Scores are in the same direction for every task: classification uses accuracy; regression uses the
normalized score 1 − MSE / Var(target) (R²: 1 is perfect, 0 is predicting the mean target).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from steerlab.core.registry import Registry
from steerlab.policies.backbones import SmallCNN, TinyTransformer, mlp
from steerlab.privacy.tasks.base import Task, scores  # noqa: F401  (the interface; re-exported for older imports)
from steerlab.privacy.tasks.envs import point_robot


class PointRobotTask(Task):
    """The paper's linear point-robot imitation task.

    State [p, g] with robot position p and goal g in [−1, 1]^dim; the expert moves straight to the goal,
    a = g − p. User u prefers the goal g_u = A_u·g + c_u, an affine map of the general goal
    (steerlab.privacy.tasks.envs.point_robot). The personal goal is never in the observation; only the key can reveal it.
    """

    name = "point_robot"
    layers = ["2"]  # input of the second hidden layer of the MLP policy (its first hidden features)
    concat_layer = "0"  # key-MLP: the key joins the policy's input
    cvae_layer = "2"
    base_steps = 1500

    def __init__(self, dim: int = 2, n_users: int = 1, hidden: int = 128, test_size: int = 2000):
        self.dim, self.n_users, self.hidden = dim, n_users, hidden
        self.maps = point_robot.user_goal_maps(dim, n_users)
        self._test_x = point_robot.sample_states(test_size, dim, torch.Generator().manual_seed(12345))  # held out

    def make_model(self) -> nn.Module:
        return mlp(2 * self.dim, self.hidden, self.dim, depth=2, act=nn.ReLU)

    def _targets(self, x: torch.Tensor, user: int | None) -> torch.Tensor:
        return point_robot.expert_actions(x, self.dim, None if user is None else self.maps[user])

    def general_batch(self, n, gen):
        x = point_robot.sample_states(n, self.dim, gen)
        return x, self._targets(x, None)

    def personal_batch(self, user, n, gen):
        x = point_robot.sample_states(n, self.dim, gen)
        return x, self._targets(x, user)

    def test_general(self):
        return self._test_x, self._targets(self._test_x, None)

    def test_personal(self, user):
        return self._test_x, self._targets(self._test_x, user)

    def loss(self, model, x, y):
        return F.mse_loss(model(x), y)

    def score(self, pred, y):
        return float(1.0 - F.mse_loss(pred, y) / y.var(0, unbiased=False).sum().div(y.shape[1]))


class DigitsTask(Task):
    """Classification on scikit-learn's bundled 8×8 digits (no download); user u's label is (l + u + 1) mod 10.

    `mnist_dir` switches to MNIST read from local IDX files (train-images-idx3-ubyte, ...), downsampled
    to 14×14, when the user has them.
    """

    name = "digits_cnn"
    layers = ["fc2"]  # the penultimate features feeding the classifier
    concat_layer = "fc1"  # key-MLP: the key joins the first fully connected layer's input
    cvae_layer = "fc1"
    base_steps = 800
    lr = 2e-3
    output_kind = "logits"

    def __init__(self, n_users: int = 1, mnist_dir: str | None = None):
        from steerlab.privacy.tasks.envs.classification import load_digits_split

        self.n_users = n_users
        (self.x_train, self.y_train), (self.x_test, self.y_test) = load_digits_split(mnist_dir)
        self.side = self.x_train.shape[-1]

    def make_model(self) -> nn.Module:
        return SmallCNN(1, self.side, 10)

    def _sample(self, n, gen):
        idx = torch.randint(0, len(self.x_train), (n,), generator=gen)
        return self.x_train[idx], self.y_train[idx]

    def general_batch(self, n, gen):
        return self._sample(n, gen)

    def personal_batch(self, user, n, gen):
        x, y = self._sample(n, gen)
        return x, (y + user + 1) % 10

    def test_general(self):
        return self.x_test, self.y_test

    def test_personal(self, user):
        return self.x_test, (self.y_test + user + 1) % 10

    def loss(self, model, x, y):
        return F.cross_entropy(model(x), y)

    def score(self, pred, y):
        return float((pred.argmax(-1) == y).float().mean())


class DigitsTransformerTask(DigitsTask):
    """The digits task with a transformer: each image row is a token; PRoP keys the q/k/v projections."""

    name = "digits_transformer"
    layers = ["inner.blocks.0.attn.q_proj", "inner.blocks.0.attn.k_proj", "inner.blocks.0.attn.v_proj"]
    concat_layer = "inner.embed"
    cvae_layer = "inner.embed"
    base_steps = 1200
    lr = 3e-3

    def make_model(self) -> nn.Module:
        return _RowTokens(TinyTransformer(self.side, self.side, 10, dim=32, heads=2, depth=1))


class _RowTokens(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.flatten(1, 2) if x.ndim == 4 else x)


def _metaworld(policy: str):
    def make(**kwargs):
        from steerlab.privacy.tasks.metaworld import MetaWorldPreferenceTask

        return MetaWorldPreferenceTask(policy=policy, **{k: v for k, v in kwargs.items() if k != "mnist_dir"})

    return make


def _panda_reach(**kwargs):
    from steerlab.privacy.tasks.panda_rl import make_panda_reach

    return make_panda_reach(**kwargs)


TASKS = Registry("personalization task", group="steerlab.personalization_tasks")
"""name -> factory(**kwargs) -> Task; a pip package adds one through the entry-point group."""
for _name, _factory in (("point_robot", PointRobotTask), ("digits_cnn", DigitsTask),
                        ("digits_transformer", DigitsTransformerTask), ("metaworld_reach_mlp", _metaworld("mlp")),
                        ("metaworld_reach_flow", _metaworld("flow")), ("panda_reach", _panda_reach)):
    TASKS.add(_name, _factory)


def make_task(name: str, **kwargs) -> Task:
    return TASKS.lookup(name)(**kwargs)
