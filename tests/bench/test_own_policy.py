"""The reward_only bench's OWN protocol policy is what docs/protocol.md asks of a user: a plain nn.Module at the
embedding level, trained by plain BC, saved as a factory checkpoint that rebuilds it exactly, and steerable by
ZPRL only through the plug-in VIB; and the bench's table shows every cell's paired difference."""

import numpy as np
import pytest
import torch

from steerlab.bench import own_policy, reward_only
from steerlab.data.dataset import write_dataset
from steerlab.policies.factory import load_policy_source
from steerlab.policies.plugin_vib import PluginVIBConfig, fit_plugin_vib
from steerlab.policies.protocol import check_steerable


def test_own_policy_is_a_plain_module_at_the_embedding_level():
    p = own_policy.make_pendulum(squash=False)
    assert type(p).__mro__[1] is torch.nn.Module  # nothing of steerlab's
    check_steerable(p, "embedding")
    with pytest.raises(Exception, match="vib"):
        check_steerable(p, "latent")  # zprl needs the plug-in VIB
    chunk = own_policy.make_pendulum().sample_chunk(torch.randn(5, 3) * 10)
    assert chunk.shape == (5, 4, 1) and chunk.abs().max() <= 2.0  # the squashed head stays in the range


def test_bc_checkpoint_rebuilds_the_trained_policy_and_takes_a_plugin_vib(tmp_path):
    demos = reward_only.record_demos("Pendulum-v1", 2, seed=0, max_steps=30, action_noise=0.3)
    write_dataset(tmp_path / "d", demos, task="Pendulum-v1", robot_type=None, extra_info={"env": "gym"})
    out = own_policy.train_own_policy("Pendulum-v1", tmp_path / "d", tmp_path / "own", steps=30, squash=False)
    policy, meta, tensors = load_policy_source(str(out))
    assert meta["config"]["kwargs"] == {"squash": False} and policy.squash is False
    fresh = own_policy.make_pendulum(squash=False)
    assert not torch.equal(fresh.obs_std, policy.obs_std)  # the normalization was fitted and saved
    obs, noise = torch.randn(4, 3), torch.randn(4, 4, 1)
    again, _, _ = load_policy_source(str(out))
    assert torch.equal(policy.sample_chunk(obs, noise), again.sample_chunk(obs, noise))
    observations = np.concatenate([d.observations for d in demos])
    vib = fit_plugin_vib(policy, observations, PluginVIBConfig(latent_dim=2, vib_hidden=16, vib_depth=1, steps=5),
                         base_meta=meta, base_tensors=tensors, progress=False)
    check_steerable(vib, "latent")
    assert vib.latent_stats["mu_rms"] > 0


def test_table_row_per_cell_with_the_paired_difference():
    cell = {"base": "own", "env": "Pendulum-v1", "method": "zprl", "seed": 2, "env_steps": 16000,
            "paired_base_return": -150.0, "paired_diff": -2.5, "paired_diff_ci95": [-6.0, 1.0],
            "regressed": {"verdict": "within noise"}}
    text = reward_only.table({"cells": [cell, {**cell, "base": None, "seed": 0}]})
    assert "| own | Pendulum-v1 | zprl | 2 | 16000 | -150.0 | -152.5 | -2.5 [-6.0, +1.0] | within noise |" in text
    assert len(text.splitlines()) == 4
