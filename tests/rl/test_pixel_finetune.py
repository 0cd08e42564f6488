"""Camera policies through the online-RL loop: every method on a Meta-World task from 16×16 frames, exact
resume, evaluation of the steered result, and a plain image `nn.Module` that implements the protocol."""

import json

import numpy as np
import pytest
import torch

from steerlab.cli import main
from steerlab.core.checkpoint import load_policy
from steerlab.core.errors import UserError
from steerlab.policies.flow_matching import FlowMatchingPolicy, FlowPolicyConfig
from steerlab.policies.flow_matching.checkpointing import save_flow_policy
from steerlab.rl.sac import SACConfig
from steerlab.train.finetune import FinetuneConfig, Finetuner

CAMS = ["corner2", "topview"]
METHODS = ("zprl", "action-residual", "dsrl", "embedding-residual")
TINY_SAC = {"hidden": 32, "batch_size": 16}


@pytest.fixture(scope="module")
def camera_ckpt(tmp_path_factory):
    """An untrained tiny camera flow policy for reach-v3 (2 cameras of 16×16, the small conv net)."""
    torch.manual_seed(0)
    cfg = FlowPolicyConfig(obs_dim=39, action_dim=4, horizon=4, n_action_steps=2, embed_dim=16, hidden=32,
                           latent_dim=4, vib_hidden=16, vib_depth=1, encoder_depth=1, velocity_depth=1,
                           num_inference_steps=2, cameras=list(CAMS), image_size=[16, 16], vision_keypoints=4,
                           vision_features=8, env={"suite": "metaworld", "task": "reach-v3", "max_steps": 20})
    policy = FlowMatchingPolicy(cfg).eval()
    torch.nn.init.normal_(policy.velocity.film_proj[-1].weight, std=0.5)  # make the embedding matter
    return save_flow_policy(policy, tmp_path_factory.mktemp("cam") / "base",
                            extra={"latent_stats": {"mu_rms": 1.0, "e_rms": 1.0}})


def _argv(base, out, method, steps):
    return ["finetune", str(base), "--method", method, "--out", str(out), "--env-steps", str(steps),
            "--max-steps", "20", "--warmup", "5", "--eval-every", "40", "--eval-episodes", "1",
            "--checkpoint-every", "40", "--buffer-size", "500", "--final-episodes", "0", "--no-tensorboard",
            "--sac-json", json.dumps(TINY_SAC)]


@pytest.mark.parametrize("method", METHODS)
def test_each_method_steers_a_camera_policy_and_evaluates(camera_ckpt, tmp_path, method):
    out = tmp_path / method
    assert main(_argv(camera_ckpt, out, method, 100)) == 0
    assert json.loads((out / "training_state" / "loop.json").read_text())["env_steps"] >= 100
    steered = load_policy(out / "policy")
    assert steered.observation_spec.cameras == tuple(CAMS)
    # the replay holds frozen features (never frames): its width is the method's feature size
    with np.load(out / "training_state" / "replay.npz") as replay:
        assert replay["obs"].dtype == np.float32 and replay["obs"].shape[1] == replay["next_obs"].shape[1] < 100
    res = tmp_path / "eval.json"
    assert main(["evaluate", str(out), "--episodes", "1", "--n-envs", "1", "--max-steps", "10",
                 "--out", str(res), "--device", "cpu"]) == 0
    ev = json.loads(res.read_text())
    assert ev["episodes"] == 1 and ev["device"] == "cpu" and ev["env"]["kwargs"]["cameras"] == CAMS
    assert ev["env"]["kwargs"]["image_size"] == [16, 16]


def test_camera_run_resumes_exactly(camera_ckpt, tmp_path):
    def cfg(out, steps):
        return FinetuneConfig(base=str(camera_ckpt), method="zprl", env_steps=steps, out=str(out), max_steps=20,
                              warmup_decisions=5, eval_every=40, eval_episodes=1, checkpoint_every=40,
                              buffer_size=500, tensorboard=False, sac=SACConfig(**TINY_SAC))

    full = Finetuner(cfg(tmp_path / "full", 100), progress=False)
    full.run()
    part = Finetuner(cfg(tmp_path / "part", 50), progress=False)  # stops at its first snapshot
    part.run()
    resumed = Finetuner(cfg(tmp_path / "part", 100), progress=False)
    assert resumed.load_state() and 0 < resumed.env_steps < full.env_steps
    resumed.run()
    assert resumed.env_steps == full.env_steps
    a, b = full.sac.state_dict()[0], resumed.sac.state_dict()[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(full.replay.obs, resumed.replay.obs)


def test_dsrl_na_refuses_cameras_in_one_line(camera_ckpt, tmp_path, capsys):
    with pytest.raises(UserError, match="dsrl-na .*camera") as err:
        Finetuner(FinetuneConfig(base=str(camera_ckpt), method="dsrl-na", out=str(tmp_path / "na"),
                                 env_steps=10, tensorboard=False), progress=False)
    assert "\n" not in str(err.value)


IMAGE_MODULE = '''
import torch
from torch import nn

from steerlab.core.observations import STATE_KEY, ObservationSpec


class TinyImagePolicy(nn.Module):
    """A plain module over one 16x16 camera + the state: a conv encoder gives e, a generator maps (e, noise)."""

    obs_dim, action_dim, horizon, n_action_steps = 39, 4, 4, 2
    embed_dim = 16
    noise_shape = (4, 4)
    observation_spec = ObservationSpec(39, ("corner2",), (16, 16))
    rl_feature_dim = 16 + 39

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 4, 5, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 8))
        self.encoder = nn.Sequential(nn.Linear(8 + 39, 32), nn.Tanh(), nn.Linear(32, 16))
        self.generator = nn.Sequential(nn.Linear(16 + 16, 32), nn.Tanh(), nn.Linear(32, 16))

    def embed(self, obs):  # obs: the converted dict, images float32 (B, 3, 16, 16) in [0, 1]
        return self.encoder(torch.cat([self.conv(obs["observation.images.corner2"]), obs[STATE_KEY]], -1))

    def rl_features(self, obs):  # frozen features for the RL actor: never pixels
        return torch.cat([self.embed(obs), obs[STATE_KEY]], -1)

    def chunk_from_embedding(self, e, noise=None):
        if noise is None:
            noise = torch.randn(e.shape[0], *self.noise_shape)
        x = torch.cat([e, 0.1 * noise.flatten(1)], dim=-1)
        return torch.tanh(self.generator(x)).reshape(-1, self.horizon, self.action_dim)

    def sample_chunk(self, obs, noise=None):
        return self.chunk_from_embedding(self.embed(obs), noise)


def make():
    torch.manual_seed(0)
    return TinyImagePolicy()
'''


def test_a_plain_image_module_is_steered_by_all_four_methods(policy_module, tmp_path):
    from steerlab.envs.registry import make_env, resolve_env
    from steerlab.policies.factory import load_policy_source
    from steerlab.policies.plugin_vib import PluginVIBConfig, fit_plugin_vib, save_plugin_vib_policy
    from steerlab.train.finetune import finetune

    ref = policy_module("tiny_image_policy", IMAGE_MODULE)
    policy, meta, tensors = load_policy_source(ref)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    # ZPRL (and the embedding residual's scale) need the plug-in VIB, fitted on frames from the task
    env = make_env(resolve_env("reach-v3", kwargs={"cameras": ["corner2"], "image_size": [16, 16]}), seed=0)
    frames = [env.reset(seed=i)[0] for i in range(32)]
    env.close()
    observations = {k: np.stack([f[k] for f in frames]) for k in frames[0]}
    assert observations["observation.images.corner2"].shape == (32, 16, 16, 3)
    vib = fit_plugin_vib(policy, observations, PluginVIBConfig(latent_dim=4, vib_hidden=16, vib_depth=1, steps=10),
                         base_meta=meta, base_tensors=tensors, progress=False)
    assert vib.latent_stats["e_rms"] > 0
    vib_ckpt = save_plugin_vib_policy(vib, tmp_path / "vib")
    obs = {k: v[:1] for k, v in observations.items()}
    for method, base in (("action-residual", ref), ("dsrl", ref), ("zprl", vib_ckpt),
                         ("embedding-residual", vib_ckpt)):
        cfg = FinetuneConfig(base=str(base), method=method, env="reach-v3", env_steps=60, max_steps=20,
                             out=str(tmp_path / method), warmup_decisions=5, eval_every=60, eval_episodes=1,
                             buffer_size=500, tensorboard=False, sac=SACConfig(**TINY_SAC))
        out = finetune(cfg, progress=False)
        steered = load_policy(out / "policy")
        assert steered.predict_chunk(obs).shape == (1, 4, 4), method
        assert steered.env_spec["kwargs"]["cameras"] == ["corner2"]
    for k, v in policy.state_dict().items():  # steering never trains the policy
        assert torch.equal(v, before[k]), k


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU paths")
def test_device_flags_without_a_gpu(camera_ckpt, tmp_path, capsys):
    from steerlab.bench.gpu_smoke import main as gpu_smoke

    with pytest.raises(UserError, match="--device cuda: no CUDA GPU") as err:
        Finetuner(FinetuneConfig(base=str(camera_ckpt), out=str(tmp_path / "r"), env_steps=10, device="cuda",
                                 tensorboard=False), progress=False)
    assert "\n" not in str(err.value)
    assert gpu_smoke(["--out", str(tmp_path / "smoke.json")]) == 0
    assert "no GPU: skipped" in capsys.readouterr().out and not (tmp_path / "smoke.json").exists()


def test_camera_policy_evaluates_in_subprocess_envs(camera_ckpt, tmp_path):
    # forked workers hung in their GL initialisation after the parent built one env: spawned ones must not
    res = tmp_path / "eval.json"
    assert main(["evaluate", str(camera_ckpt), "--episodes", "2", "--n-envs", "2", "--max-steps", "6",
                 "--out", str(res), "--device", "cpu"]) == 0
    assert json.loads(res.read_text())["episodes"] == 2
