"""A LeRobot DiffusionPolicy trained by LeRobot's code, steered on Meta-World reach-v3 by dsrl, zprl (plug-in
VIB fitted post hoc on its global conditioning) and action-residual through the protocol only; its weights
stay bitwise unchanged. A few decisions per method: this checks the plumbing, not learning."""

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import offline_hf  # noqa: F401  (before lerobot)
import pytest
import torch

from steerlab.cli import main
from steerlab.core.checkpoint import load_policy
from steerlab.data.dataset import read_dataset

pytestmark = [pytest.mark.lerobot, pytest.mark.slow]
pytest.importorskip("lerobot", reason="needs the lerobot extra (Python >= 3.12): `make test-lerobot`")
pytest.importorskip("diffusers", reason="needs lerobot[diffusion]: `make test-lerobot`")

from tiny_diffusion import ALIASES, train_tiny_diffusion  # noqa: E402

from steerlab.policies.factory import load_policy_source  # noqa: E402
from steerlab.policies.lerobot_diffusion import stack_history  # noqa: E402
from steerlab.policies.plugin_vib import PluginVIBConfig, fit_plugin_vib, save_plugin_vib_policy  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lerobot-v3"
SEED = 0
# what a user writes to steer their LeRobot policy from steerlab: a policy factory and an env factory
FACTORY = '''
from steerlab.envs.metaworld_env import make_env as make_metaworld
from steerlab.policies.lerobot_diffusion import load_lerobot_diffusion, with_history

POLICY_DIR = {policy_dir!r}


def make_policy():
    return load_lerobot_diffusion(POLICY_DIR, aliases={aliases!r}, history="stacked")


def make_env(**kwargs):
    # the policy sees its last 2 observations (n_obs_steps=2): stack them, padding with the reset frame
    return with_history(make_metaworld("reach-v3", **kwargs), 2)
'''


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("steer")
    data = shutil.copytree(FIXTURES / "with-reward", tmp / "with-reward")
    policy_dir = train_tiny_diffusion(data, tmp / "lerobot_policy", steps=30, seed=SEED)
    (tmp / "lerobot_reach.py").write_text(FACTORY.format(policy_dir=str(policy_dir), aliases=ALIASES))
    # a user runs steerlab from the folder holding their factory module: steerlab imports it from there
    here = os.getcwd()
    os.chdir(tmp)
    try:
        yield tmp, data, policy_dir
    finally:
        os.chdir(here)
        sys.modules.pop("lerobot_reach", None)


def tiny_run(base: str, method: str, out: Path) -> Path:
    """`steerlab finetune` as a user runs it, sized to seconds: 48 env steps = 6 decisions of 8 actions."""
    assert main(["finetune", base, "--method", method, "--env", "lerobot_reach:make_env", "--env-steps", "48",
                 "--max-steps", "16", "--warmup", "2", "--eval-every", "1000000", "--eval-episodes", "1",
                 "--seed", str(SEED), "--out", str(out), "--no-resume",
                 "--sac-json", '{"hidden": 32, "batch_size": 4}']) == 0
    return out


def test_lerobot_policy_steered_by_three_methods_weights_unchanged(setup):
    tmp, data, policy_dir = setup
    policy, meta, tensors = load_policy_source("lerobot_reach:make_policy")
    before = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    on_disk = {k: v.clone() for k, v in tensors.items()}

    # zprl's latent interface: a VIB fitted post hoc on the policy's global conditioning
    ds = read_dataset(data)
    obs = stack_history(ds.observations, ds.episode_slices(), policy.n_obs_steps)
    wrapped = fit_plugin_vib(policy, obs, PluginVIBConfig(latent_dim=4, vib_hidden=32, vib_depth=1, steps=20,
                                                          batch_size=32, seed=SEED),
                             base_meta=meta, base_tensors=tensors, progress=False)
    save_plugin_vib_policy(wrapped, tmp / "vib")

    results = {}
    for method, base in (("dsrl", "lerobot_reach:make_policy"), ("zprl", str(tmp / "vib")),
                         ("action-residual", "lerobot_reach:make_policy")):
        run = tiny_run(base, method, tmp / f"run-{method}")
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert rows[-1]["step"] >= 48, method
        steered = load_policy(run / "policy")  # a full policy, rebuilt by the one loader
        chunk = steered.predict_chunk(obs[:2], noise=torch.zeros(2, 16, 4))
        assert chunk.shape[0] == 2 and chunk.shape[-1] == 4 and np.isfinite(chunk).all(), method
        results[method] = rows[-1]

    # the LeRobot policy was only read: same weights in memory and in every checkpoint made from it
    for k, v in policy.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k, v in tensors.items():
        assert torch.equal(v, on_disk[k]), k
    reloaded = load_policy(tmp / "run-zprl" / "policy")
    base = reloaded.base if hasattr(reloaded, "base") else reloaded.policy
    inner = getattr(base, "policy", base)
    for k, v in inner.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert set(results) == {"dsrl", "zprl", "action-residual"}
