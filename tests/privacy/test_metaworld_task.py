"""privacy/tasks/metaworld.py: the Meta-World personalization recipe (a user's goal taught by demos)."""

import numpy as np
import torch

from steerlab.privacy.keys import generate_key
from steerlab.privacy.prop.keyed import KeyedModel
from steerlab.privacy.tasks.metaworld import OFFSET, MetaWorldPreferenceTask, user_offset
from steerlab.privacy.tasks.scorers import EnvSuccessScorer


def test_user_goals_are_distinct_offsets_in_the_table_plane():
    offsets = np.stack([user_offset(u) for u in range(8)])
    np.testing.assert_allclose(np.linalg.norm(offsets, axis=1), OFFSET, rtol=1e-6)
    assert np.all(offsets[:, 2] == 0) and len({tuple(o.round(6)) for o in offsets}) == 8


def test_metaworld_recipe_data_model_loss_and_scores():
    task = MetaWorldPreferenceTask(policy="mlp", n_users=2, personal_demos=2, general_demos=2, eval_episodes=1)
    assert task.name == "metaworld_reach_mlp" and isinstance(task.scorer, EnvSuccessScorer)
    (xg, yg), (xp, yp) = task.general, task.personal[1]
    assert xg.shape[1] == xp.shape[1] == 39 and yg.shape[1] == yp.shape[1] == 4
    # the personal demos keep the task's goal in the observation, yet act towards another goal
    assert not torch.equal(task.personal[0][1], task.personal[1][1])
    gen = torch.Generator().manual_seed(0)
    model = task.make_model()
    np.testing.assert_allclose(model.obs_norm.mean.numpy(), xg.mean(0).numpy(), rtol=1e-5, atol=1e-6)
    x, y = task.personal_batch(1, 16, gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = task.loss(model, x, y).item()
    for _ in range(30):
        loss = task.loss(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert np.isfinite(first) and loss.item() < first
    keyed = KeyedModel(model, task.layers)  # the recipe's keyed layer exists in its model
    keyed.set_key(generate_key())
    s = task.scorer.scores(task, lambda obs: task.predict(keyed, obs))
    assert set(s) == {"general", "personal"} and all(0.0 <= v <= 1.0 for v in s.values())
