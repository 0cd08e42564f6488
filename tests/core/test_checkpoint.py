import copy
import json

import numpy as np
import pytest
import torch
from conftest import TINY_POLICY

import steerlab.train.pretrain as pretrain_module
from steerlab.core.checkpoint import CheckpointError, load_policy
from steerlab.core.errors import UserError
from steerlab.train.pretrain import PretrainConfig, pretrain


def _train(ds, out, seed=0, **kw):
    return pretrain(PretrainConfig(dataset=str(ds), out=str(out), steps=kw.pop("steps", 20), batch_size=16,
                                   seed=seed, policy=dict(TINY_POLICY), **kw), progress=False)


def test_save_load_gives_identical_actions(tiny_dataset, tmp_path):
    """The trained policy in memory and the one loaded from its checkpoint act identically (as SB3 checks)."""
    ckpt = tmp_path / "p"
    trained = {}
    real_save = pretrain_module.save_flow_policy

    def keep(policy, folder, extra=None):  # capture the in-memory policy the checkpoint is written from
        trained["policy"] = copy.deepcopy(policy)
        return real_save(policy, folder, extra)

    pretrain_module.save_flow_policy = keep
    try:
        _train(tiny_dataset, ckpt)
    finally:
        pretrain_module.save_flow_policy = real_save
    a, b = trained["policy"], load_policy(ckpt)
    obs = np.random.default_rng(0).standard_normal((5, 39)).astype(np.float32)
    noise = torch.randn(5, 8, 4)
    np.testing.assert_array_equal(a.predict_chunk(obs, noise=noise), b.predict_chunk(obs, noise=noise))
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k
    a.reset(), b.reset()
    for x in obs[:3]:  # and step by step through the action queue
        np.testing.assert_array_equal(a.select_action(x, noise=noise[:1]), b.select_action(x, noise=noise[:1]))
    meta = json.loads((ckpt / "config.json").read_text())
    assert meta["config"]["env"]["task"] == "push-wall-v3"
    assert {"observation.state", "action"} <= set(meta["normalization"])
    assert meta["versions"]["steerlab"] and meta["latent_stats"]["mu_rms"] > 0
    torch.testing.assert_close(a.obs_norm.mean, torch.tensor(meta["normalization"]["observation.state"]["mean"]))


def test_same_seed_same_policy_and_actions(tiny_dataset, tmp_path):
    p1, p2 = load_policy(_train(tiny_dataset, tmp_path / "a")), load_policy(_train(tiny_dataset, tmp_path / "b"))
    for (k, v1), v2 in zip(p1.state_dict().items(), p2.state_dict().values()):
        assert torch.equal(v1, v2), k
    obs = np.zeros((2, 39), np.float32)
    np.testing.assert_array_equal(p1.predict_chunk(obs, generator=torch.Generator().manual_seed(3)),
                                  p2.predict_chunk(obs, generator=torch.Generator().manual_seed(3)))
    p3 = load_policy(_train(tiny_dataset, tmp_path / "c", seed=1))
    assert not torch.equal(p1.encoder[0].weight, p3.encoder[0].weight)


def test_vib_only_posthoc_leaves_policy_untouched(tiny_dataset, tmp_path):
    base = pretrain(PretrainConfig(dataset=str(tiny_dataset), out=str(tmp_path / "plain"), steps=20, batch_size=16,
                                   policy={**TINY_POLICY, "use_vib": False}), progress=False)
    with_vib = pretrain(PretrainConfig(dataset=str(tiny_dataset), out=str(tmp_path / "vib"), steps=20, batch_size=16,
                                       vib_only=True, from_ckpt=str(base)), progress=False)
    a, b = load_policy(base), load_policy(with_vib)
    assert a.vib is None and b.vib is not None and b.config.act_through_vib
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name
    # the plain imitation path of the VIB policy is exactly the original policy
    b.config.act_through_vib = False
    obs, noise = np.ones((2, 39), np.float32), torch.randn(2, 8, 4)
    np.testing.assert_array_equal(a.predict_chunk(obs, noise=noise), b.predict_chunk(obs, noise=noise))


def test_vib_only_needs_a_source(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="--from"):
        _train(tiny_dataset, tmp_path / "x", vib_only=True)


def test_missing_checkpoint_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_policy(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        load_policy(tmp_path / "empty")


def test_corrupt_weights_are_a_clear_error(tiny_dataset, tmp_path):
    ckpt = _train(tiny_dataset, tmp_path / "p")
    (ckpt / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_policy(ckpt)


def test_corrupt_config_is_a_clear_error(tiny_dataset, tmp_path):
    ckpt = _train(tiny_dataset, tmp_path / "p")
    (ckpt / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_policy(ckpt)


def test_config_weight_mismatch_is_a_clear_error(tiny_dataset, tmp_path):
    ckpt = _train(tiny_dataset, tmp_path / "p")
    meta = json.loads((ckpt / "config.json").read_text())
    meta["config"]["hidden"] = 64
    (ckpt / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape"):
        load_policy(ckpt)


def test_unknown_policy_type(tiny_dataset, tmp_path):
    ckpt = _train(tiny_dataset, tmp_path / "p")
    meta = json.loads((ckpt / "config.json").read_text())
    meta["policy_type"] = "diffusion-transformer"
    (ckpt / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown policy_type"):
        load_policy(ckpt)


def test_wrong_field_type_in_config_is_a_clear_error(tiny_dataset, tmp_path):
    ckpt = _train(tiny_dataset, tmp_path / "p")
    meta = json.loads((ckpt / "config.json").read_text())
    meta["config"]["hidden"] = "256"
    (ckpt / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"hidden must be int, got '256'"):
        load_policy(ckpt)
    with pytest.raises(UserError, match="use_vib must be bool"):
        from steerlab.policies.flow_matching import FlowPolicyConfig

        FlowPolicyConfig(use_vib=1)
