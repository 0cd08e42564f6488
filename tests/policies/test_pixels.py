"""Camera observations: the boundary converter, the flow policy's vision encoders, steering on dict observations."""

import numpy as np
import pytest
import torch

from steerlab.core.checkpoint import load_policy
from steerlab.core.errors import UserError
from steerlab.core.observations import ObservationSpec, to_policy_obs
from steerlab.policies.flow_matching import FlowMatchingPolicy, FlowPolicyConfig
from steerlab.policies.flow_matching.checkpointing import save_flow_policy
from steerlab.policies.protocol import as_policy_obs, rl_feature_dim, rl_features
from steerlab.rl.steering import make_adapter

CAMS = ["front", "wrist"]


def tiny_policy(backbone="small", shared=True, seed=0) -> FlowMatchingPolicy:
    torch.manual_seed(seed)
    cfg = FlowPolicyConfig(obs_dim=5, action_dim=3, horizon=4, n_action_steps=2, embed_dim=16, hidden=32,
                           latent_dim=4, vib_hidden=16, vib_depth=1, cameras=list(CAMS), image_size=[24, 24],
                           vision_backbone=backbone, vision_shared=shared, vision_keypoints=8, vision_features=8)
    policy = FlowMatchingPolicy(cfg).eval()
    # a fresh policy's FiLM starts at zero (the generator ignores e until trained): make e matter
    torch.nn.init.normal_(policy.velocity.film_proj[-1].weight, std=0.5)
    return policy


def frames(batch=3, seed=0, size=(24, 24)):
    rng = np.random.default_rng(seed)
    obs = {"observation.state": rng.normal(size=(batch, 5)).astype(np.float32)}
    for cam in CAMS:
        obs[f"observation.images.{cam}"] = rng.integers(0, 256, (batch, *size, 3), dtype=np.uint8)
    return obs


def test_converter_gives_float_chw_in_unit_range_and_is_idempotent():
    spec = ObservationSpec(5, tuple(CAMS), (24, 24))
    raw = frames()
    x = to_policy_obs(raw, spec)
    img = x["observation.images.front"]
    assert img.dtype == torch.float32 and img.shape == (3, 3, 24, 24)
    # pixel (row 2, col 7) channel 1 of sample 0: uint8 HWC -> float CHW / 255
    assert img[0, 1, 2, 7].item() == pytest.approx(raw["observation.images.front"][0, 2, 7, 1] / 255.0)
    again = to_policy_obs(x, spec)
    assert torch.equal(again["observation.images.front"], img)
    single = to_policy_obs({k: v[0] for k, v in raw.items()}, spec)
    assert single["observation.images.wrist"].shape == (1, 3, 24, 24)


@pytest.mark.parametrize("edit, match", [
    (lambda o: o.pop("observation.images.wrist"), r"lacks camera 'observation.images.wrist'.*\(24, 24, 3\)"),
    (lambda o: o.__setitem__("observation.images.front", np.zeros((3, 20, 24, 3), np.uint8)),
     r"observation.images.front must be uint8.*\(24, 24, 3\)"),
    (lambda o: o.__setitem__("observation.images.front", np.zeros((3, 3, 24, 24), np.uint8)),
     r"observation.images.front is channels-first"),
    (lambda o: o.__setitem__("observation.images.front", np.zeros((3, 24, 24, 3), np.float32)),
     r"observation.images.front: a float image must be float32 \(batch, 3, 24, 24\)"),
    (lambda o: o.__setitem__("observation.images.front", np.full((3, 3, 24, 24), np.nan, np.float32)),
     r"observation.images.front contains NaN"),
    (lambda o: o.__setitem__("observation.images.front", np.zeros((3, 24, 24, 3), np.int64)),
     r"observation.images.front must be uint8"),
    (lambda o: o.pop("observation.state"), r"lacks 'observation.state': expected shape \(5,\)"),
    (lambda o: o.__setitem__("observation.state", np.zeros((3, 4), np.float32)), r"observation.state must have shape \(5,\)"),
])
def test_bad_camera_observations_are_one_line_errors(edit, match):
    obs = frames()
    edit(obs)
    with pytest.raises(UserError, match=match) as err:
        tiny_policy().predict_chunk(obs)
    assert "\n" not in str(err.value)


def test_flat_vector_to_a_camera_policy_is_refused():
    with pytest.raises(UserError, match="must be a dict with observation.state"):
        tiny_policy().predict_chunk(np.zeros(5, np.float32))


@pytest.mark.parametrize("backbone, shared", [("small", True), ("small", False), ("resnet18", True)])
def test_forward_shapes(backbone, shared):
    policy = tiny_policy(backbone, shared)
    x = as_policy_obs(policy, frames())
    assert policy.embed(x).shape == (3, 16)
    assert policy.predict_chunk(frames()).shape == (3, 4, 3)
    assert rl_features(policy, x).shape == (3, rl_feature_dim(policy)) == (3, 16 + 5)
    names = {k.split(".")[2] for k in policy.state_dict() if k.startswith("vision.backbones.")}
    assert names == ({"shared"} if shared else set(CAMS))


def test_images_change_the_embedding():
    # (not the actions: a fresh policy's FiLM starts at zero, so its generator ignores e until trained)
    policy = tiny_policy()
    obs = frames()
    for cam in CAMS:
        other = {**obs, f"observation.images.{cam}": 255 - obs[f"observation.images.{cam}"]}
        assert not torch.allclose(policy.embed(as_policy_obs(policy, obs)), policy.embed(as_policy_obs(policy, other)))


def test_random_crop_only_in_training():
    policy = tiny_policy()
    x = as_policy_obs(policy, frames())
    assert torch.equal(policy.embed(x), policy.embed(x))  # eval: centre crop, deterministic
    policy.train()
    a = policy.embed(x, torch.Generator().manual_seed(1))
    b = policy.embed(x, torch.Generator().manual_seed(2))
    assert not torch.allclose(a, b)
    loss, logs = policy.compute_loss(x, torch.zeros(3, 4, 3), generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert policy.vision.backbones["shared"].out.weight.grad is not None


def test_save_load_gives_identical_actions(tmp_path):
    policy = tiny_policy(shared=False)
    save_flow_policy(policy, tmp_path / "p")
    loaded = load_policy(tmp_path / "p")
    assert loaded.config.cameras == CAMS and loaded.config.image_size == [24, 24]
    assert loaded.config.vision_backbone == "small" and loaded.config.vision_shared is False
    noise = torch.randn(3, 4, 3, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(policy.predict_chunk(frames(), noise=noise),
                                  loaded.predict_chunk(frames(), noise=noise))


def test_state_only_policy_is_unchanged():
    torch.manual_seed(0)
    policy = FlowMatchingPolicy(FlowPolicyConfig(obs_dim=5, action_dim=3))
    assert policy.vision is None and not any(k.startswith("vision.") for k in policy.state_dict())
    assert policy.encoder[0].in_features == 5
    x = torch.randn(2, 5)
    assert torch.equal(rl_features(policy, x), policy.normalize_obs(x))
    assert rl_feature_dim(policy) == 5


def test_zprl_runs_its_hooks_on_a_dict_observation():
    policy = tiny_policy()
    adapter = make_adapter(policy, "zprl", {"latent_scale": 0.5})
    x = as_policy_obs(policy, frames())
    feats = adapter.features(x, train=False)
    assert feats.shape == (3, adapter.obs_dim) == (3, 16 + 4)  # frozen features, never pixels
    noise = torch.randn(3, 4, 3, generator=torch.Generator().manual_seed(0))
    zero = adapter.chunk(x, feats, torch.zeros(3, 4), noise)
    torch.testing.assert_close(zero, policy.sample_chunk(x, noise))  # Δz = 0 is the base policy
    moved = adapter.chunk(x, feats, torch.ones(3, 4), noise)
    assert moved.shape == (3, 4, 3) and not torch.allclose(moved, zero)


@pytest.mark.parametrize("method, feat_dim", [("action-residual", 16 + 5 + 2 * 3), ("dsrl", 16),
                                              ("embedding-residual", 16)])
def test_other_methods_see_frozen_features_of_dict_observations(method, feat_dim):
    policy = tiny_policy()
    adapter = make_adapter(policy, method, {"embedding_scale": 0.1} if method == "embedding-residual" else {})
    x = as_policy_obs(policy, frames())
    noise = torch.zeros(3, 4, 3)
    feats = adapter.features(x, train=True, gen=torch.Generator().manual_seed(0), noise=noise)
    assert feats.shape == (3, feat_dim) == (3, adapter.obs_dim)
    action = torch.zeros(3, adapter.act_dim)
    assert adapter.chunk(x, feats, action, noise).shape == (3, 4, 3)


def test_dsrl_na_refuses_a_camera_policy():
    with pytest.raises(UserError, match="dsrl-na .* does not take camera policies"):
        make_adapter(tiny_policy(), "dsrl-na")
