"""A keyed (PRoP-style, UNSEALED) steering actor, for the record: what the attack suite recovers from it.

The sealed online part (steerlab.privacy.sealed.online) hides a user's RL-improved steering actor entirely. The
PRoP alternative keeps one shared actor whose linear layers are keyed by the user's key
(steerlab.privacy.prop.keyed.KeyedModel): with the key it acts as the user's RL-trained actor, with a wrong key
or none as the base's (the zero residual: the public base's behaviour). It is distilled from the trained
actor with `prop`'s loss (personal + general + anchor) on the features of the base's states (the general
and the user's demonstrations), then attacked with the project's attack suite (`run_attacks`). Scores:
−MSE between the keyed actor's deterministic action and the target action (the user's actor for
"personal", the zero residual for "general"), on held-out features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from steerlab.privacy.tasks.base import Task


class ActorMean(nn.Module):
    """A SAC actor as a deterministic map features → action (tanh of its mean): what the steering runs."""

    def __init__(self, actor: nn.Module):
        super().__init__()
        self.actor = actor

    def forward(self, x):
        return torch.tanh(self.actor(x)[0])


class SteeringActorTask(Task):
    """Supervised view of one user's steering actor: inputs are steering features, the personal target the
    user's RL-trained actor's action, the general target the base's (zero residual)."""

    name = "steering_actor"
    n_users = 1
    lr = 1e-3
    default_steps = 1500

    def __init__(self, base_actor: nn.Module, user_actor: nn.Module, feats: torch.Tensor, holdout: float = 0.2,
                 seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(feats), generator=gen)
        n_test = max(1, int(holdout * len(feats)))
        self.test_x, self.train_x = feats[perm[:n_test]], feats[perm[n_test:]]
        self.base_model = ActorMean(base_actor).eval()
        with torch.no_grad():
            self.user_out = {"train": ActorMean(user_actor)(self.train_x), "test": ActorMean(user_actor)(self.test_x)}
            self.base_out = {"train": self.base_model(self.train_x), "test": self.base_model(self.test_x)}
        self.layers = ["actor.trunk.2"]
        self.concat_layer = "actor.trunk.0"
        self.cvae_layer = None

    def make_model(self) -> nn.Module:
        return self.base_model

    def _batch(self, split_out, n, gen):
        idx = torch.randint(0, len(self.train_x), (n,), generator=gen)
        return self.train_x[idx], split_out[idx]

    def general_batch(self, n, gen):
        return self._batch(self.base_out["train"], n, gen)

    def personal_batch(self, user, n, gen):
        return self._batch(self.user_out["train"], n, gen)

    def test_general(self):
        return self.test_x, self.base_out["test"]

    def test_personal(self, user):
        return self.test_x, self.user_out["test"]

    def loss(self, model, x, y):
        return F.mse_loss(model(x), y)

    def score(self, pred, y) -> float:
        return -float(F.mse_loss(torch.as_tensor(pred), y))


def keyed_actor_attack(base_actor: nn.Module, user_actor: nn.Module, feats: torch.Tensor, key, steps: int,
                       seed: int = 0, quick: bool = False) -> dict:
    """Train the keyed (unsealed) steering actor of one user (`prop`) and run the attack suite on it: the
    attack report plus the key-case scores (−MSE to the user's actor / to the base's zero residual)."""
    from steerlab.privacy.attacks import attack_summary
    from steerlab.privacy.key_cases import evaluate_key_cases
    from steerlab.privacy.methods import PersonalizeConfig, build_personalized
    from steerlab.privacy.tasks.base import scores

    torch.manual_seed(seed)
    task = SteeringActorTask(base_actor, user_actor, feats, seed=seed)
    base = task.base_model
    p = build_personalized("prop", task, base, [key], PersonalizeConfig(steps=steps, seed=seed))
    cases = evaluate_key_cases(p, task, seed, n_keys=8)
    model = p.model
    base_personal = scores(task, lambda x: task.predict(base, x))["personal"]
    report = attack_summary(model, base, task, key.bits(), cases["correct"]["personal"], base_personal, quick=quick,
                            seed=seed)
    return {"cases": cases, "base_personal": base_personal, "steps": steps, "attacks": report}
