"""A LeRobot DiffusionPolicy, trained by LeRobot's own code, behind steerlab's steerable-policy protocol."""

import shutil
from pathlib import Path

import numpy as np
import offline_hf  # noqa: F401  (before lerobot)
import pytest
import torch

from steerlab.core.errors import UserError
from steerlab.data.dataset import read_dataset
from steerlab.policies.protocol import check_steerable

pytestmark = pytest.mark.lerobot
pytest.importorskip("lerobot", reason="needs the lerobot extra (Python >= 3.12): `make test-lerobot`")
pytest.importorskip("diffusers", reason="needs lerobot[diffusion]: `make test-lerobot`")

from tiny_diffusion import ALIASES, train_tiny_diffusion  # noqa: E402

from steerlab.policies.lerobot_diffusion import (  # noqa: E402
    LeRobotDiffusionPolicy,
    load_lerobot_diffusion,
    stack_history,
    with_history,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lerobot-v3"
SEED = 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(LeRobot checkpoint folder, dataset copy): 30 LeRobot training steps on the with-reward fixture."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("lerobot")
    data = shutil.copytree(FIXTURES / "with-reward", tmp / "with-reward")
    return train_tiny_diffusion(data, tmp / "policy", steps=30, seed=SEED), data


@pytest.fixture
def policy(trained):
    return load_lerobot_diffusion(trained[0], aliases=ALIASES, env={"suite": "metaworld", "task": "reach-v3"})


@pytest.fixture
def histories(trained):
    ds = read_dataset(trained[1])
    return torch.as_tensor(stack_history(ds.observations, ds.episode_slices(), 2))


def weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_protocol_sizes(policy):
    check_steerable(policy, "embedding")
    assert (policy.obs_dim, policy.action_dim) == (2 * 39, 4)
    assert policy.horizon == 16 - 1 and policy.n_action_steps == 8
    assert policy.noise_shape == (16, 4)
    assert policy.embed_dim == 2 * (39 + 39)  # state + environment state, over the two observation steps


def test_sample_chunk_is_lerobots_own_prediction(policy, histories):
    """Same noise, same observations: the wrapper's chunk is what LeRobot's predict_action_chunk +
    postprocessor give (so normalization, history and the chunk's start step are LeRobot's)."""
    obs = histories[[0, 50, 100]]
    noise = torch.randn((3, *policy.noise_shape), generator=torch.Generator().manual_seed(SEED))
    frames = obs.reshape(3, 2, 39)
    batch = policy.preprocessor({"observation.state": frames, "observation.environment_state": frames})
    policy.policy.reset()
    ref = policy.postprocessor(policy.policy.predict_action_chunk(batch, noise=noise))
    with torch.no_grad():
        ours = policy.sample_chunk(obs, noise)
    assert ours.shape == (3, 15, 4)
    torch.testing.assert_close(ours[:, : policy.n_action_steps], ref, rtol=0, atol=0)


def test_deterministic_given_noise_and_embedding_consistency(policy, histories):
    obs = histories[:4]
    g = torch.Generator().manual_seed(SEED)
    noise, other = torch.randn((2, 4, *policy.noise_shape), generator=g)
    with torch.no_grad():
        a, b = policy.sample_chunk(obs, noise), policy.sample_chunk(obs, noise.clone())
        c = policy.sample_chunk(obs, other)
        d = policy.chunk_from_embedding(policy.embed(obs), noise)
    assert torch.equal(a, b) and torch.equal(a, d)
    assert not torch.allclose(a, c)  # the noise matters: it is a steering handle
    assert policy.embed(obs).shape == (4, policy.embed_dim)
    assert policy.predict_chunk(obs.numpy(), noise=noise.numpy()).shape == (4, 15, 4)


def test_embedding_is_a_steering_handle_with_gradients(policy, histories):
    """chunk_from_embedding is differentiable in e (the plug-in VIB trains through it); the policy's
    parameters get no gradient and keep their values."""
    before = weights(policy)
    e = policy.embed(histories[:2]).detach().requires_grad_(True)
    noise = torch.randn((2, *policy.noise_shape), generator=torch.Generator().manual_seed(SEED))
    out = policy.chunk_from_embedding(e, noise)
    (grad,) = torch.autograd.grad(out.square().sum(), e)
    assert grad.abs().sum() > 0
    assert all(p.grad is None for p in policy.parameters())
    assert all(torch.equal(v, before[k]) for k, v in policy.state_dict().items())


def test_repeat_history_is_stacked_with_the_current_frame_repeated(trained, histories):
    stacked = load_lerobot_diffusion(trained[0], aliases=ALIASES)
    repeat = load_lerobot_diffusion(trained[0], aliases=ALIASES, history="repeat")
    current = histories[:3, 39:]
    noise = torch.randn((3, *stacked.noise_shape), generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        torch.testing.assert_close(repeat.sample_chunk(current, noise),
                                   stacked.sample_chunk(current.repeat(1, 2), noise), rtol=0, atol=0)
    assert repeat.obs_dim == 39 and repeat.embed_dim == stacked.embed_dim


def test_stack_history_matches_lerobots_delta_timestamps(trained):
    """stack_history pads like LeRobot's dataset does for the policy's observation window."""
    from lerobot.datasets import LeRobotDataset

    ds = read_dataset(trained[1])
    fps = ds.info["fps"]
    lr = LeRobotDataset("local/h", root=trained[1], delta_timestamps={"observation.state": [-1 / fps, 0.0]})
    ours = stack_history(ds.observations, ds.episode_slices(), 2)
    for i in (0, 1, 45, 46, 47, len(ours) - 1):  # episode starts are padded with their first frame
        np.testing.assert_array_equal(ours[i], lr[i]["observation.state"].numpy().reshape(-1))


def test_with_history_env_emits_stacked_observations():
    import gymnasium as gym

    env = with_history(gym.make("Pendulum-v1"), 2)
    obs, _ = env.reset(seed=SEED)
    assert obs.shape == (6,) and np.array_equal(obs[:3], obs[3:])  # reset frame repeated
    nxt, *_ = env.step(np.zeros(1, np.float32))
    assert np.array_equal(nxt[:3], obs[3:])  # oldest first: the previous frame, then the new one


def test_ddpm_policy_is_refused_for_noise_steering(trained, tmp_path):
    ddpm = train_tiny_diffusion(trained[1], tmp_path / "ddpm", steps=1, seed=SEED, scheduler="DDPM")
    policy = load_lerobot_diffusion(ddpm, aliases=ALIASES)
    check_steerable(policy, "action")  # action-residual only needs actions
    with pytest.raises(UserError, match="noise_shape"):
        check_steerable(policy, "noise", "dsrl")


def test_bad_configuration_is_a_clear_error(trained):
    # without an alias, a frame is both declared features concatenated: state then environment state
    assert load_lerobot_diffusion(trained[0]).obs_dim == 2 * (39 + 39)
    with pytest.raises(UserError, match="observation.environment_state"):
        load_lerobot_diffusion(trained[0], obs_keys=("observation.state",))  # env state neither given nor aliased
    with pytest.raises(UserError, match="history"):
        load_lerobot_diffusion(trained[0], aliases=ALIASES, history="last")
    with pytest.raises(UserError, match="not a saved LeRobot policy"):
        load_lerobot_diffusion(trained[1])
    with pytest.raises(UserError, match="shape"):
        load_lerobot_diffusion(trained[0], aliases=ALIASES).predict_chunk(np.zeros(39, np.float32))


def test_wrapper_is_a_module_holding_the_lerobot_policy(policy):
    assert isinstance(policy, LeRobotDiffusionPolicy) and isinstance(policy, torch.nn.Module)
    assert not policy.policy.training
    assert sum(p.numel() for p in policy.parameters()) == sum(p.numel() for p in policy.policy.parameters())
