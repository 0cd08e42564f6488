"""One loader: every command that takes a policy takes a checkpoint folder or `module:factory`, imported from the
current folder; import and factory failures are one line naming the factory and the fix."""

import json
import sys

import numpy as np
import pytest
import torch

from steerlab.cli import main
from steerlab.core.checkpoint import load_policy
from steerlab.core.errors import UserError
from steerlab.data import Recorder
from steerlab.policies.factory import build_factory_policy

REACH_POLICY = '''
import torch
from torch import nn


class Reach(nn.Module):
    obs_dim, action_dim, horizon, n_action_steps, chunk_shape = 4, 2, 4, 2, (4, 2)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 8))

    def predict_chunk(self, obs, noise=None):
        return torch.tanh(self.net(torch.as_tensor(obs, dtype=torch.float32))).reshape(-1, 4, 2)

    def compute_loss(self, obs, chunk):
        return (self.predict_chunk(obs) - chunk).pow(2).mean()


def make():
    return Reach()


def broken(**kwargs):
    raise ValueError("no weights at /nowhere")
'''


@pytest.fixture
def in_user_folder(tmp_path, monkeypatch):
    """The user's folder holds reach_policy.py; steerlab is run from it with nothing on sys.path."""
    (tmp_path / "reach_policy.py").write_text(REACH_POLICY)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("reach_policy", None)


def _demos(folder, offset, seed0=0):
    from steerlab.envs.registry import make_env

    env = make_env("steerlab/PointReach-v0")
    with Recorder(folder, task="steerlab/PointReach-v0") as rec:
        for ep in range(4):
            obs, _ = env.reset(seed=seed0 + ep)
            for _ in range(10):
                action = np.clip((obs[2:] + offset - obs[:2]) / 0.1, -1, 1)
                rec.add_frame(obs, action)
                obs = env.step(action)[0]
            rec.end_episode()


def test_current_folder_is_importable_only_for_the_import(in_user_folder):
    assert str(in_user_folder) not in sys.path and "" not in sys.path
    policy = load_policy("reach_policy:make")
    assert type(policy).__name__ == "Reach" and not policy.training
    assert str(in_user_folder) not in sys.path  # nothing left behind


def test_import_and_factory_errors_name_the_factory_and_the_fix(in_user_folder):
    with pytest.raises(UserError, match=r"cannot import 'mypkg' for factory 'mypkg:make_policy': run from the folder "
                                        r"holding mypkg.py .*or pip install it"):
        load_policy("mypkg:make_policy")
    with pytest.raises(UserError, match=r"factory 'reach_policy:broken' raised ValueError: no weights at /nowhere"):
        load_policy("reach_policy:broken")
    with pytest.raises(UserError, match=r"module 'reach_policy' has no attribute 'nope'"):
        build_factory_policy("reach_policy:nope")
    (in_user_folder / "bad_import.py").write_text("import not_installed_dep\n")
    with pytest.raises(UserError, match=r"importing 'bad_import' needs 'not_installed_dep'.*pip install"):
        load_policy("bad_import:make")


def test_evaluate_takes_a_factory_and_asks_for_env(in_user_folder, capsys):
    assert main(["evaluate", "reach_policy:make", "--episodes", "2", "--n-envs", "1"]) == 2
    assert "names no environment; pass --env" in capsys.readouterr().err
    assert main(["evaluate", "reach_policy:make", "--env", "steerlab/PointReach-v0", "--episodes", "2",
                 "--n-envs", "1", "--max-steps", "10"]) == 0
    res = json.loads(next((in_user_folder / "reach_policy_make.evals").glob("*.json")).read_text())
    assert res["checkpoint"] == "reach_policy:make" and res["episodes"] == 2
    capsys.readouterr()
    assert main(["evaluate", "reach_policy:broken", "--env", "steerlab/PointReach-v0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "steerlab evaluate: error: factory 'reach_policy:broken' raised ValueError: no weights at /nowhere"


def test_personalize_a_factory_base_then_attack_and_evaluate_its_release(in_user_folder, capsys):
    _demos("general", np.zeros(2, np.float32))
    _demos("alice", np.array([0.3, 0.0], np.float32), seed0=50)
    assert main(["keygen", "--out", "alice.key"]) == 0
    argv = ["personalize", "--base", "reach_policy:make", "--personal", "alice", "--keys", "alice.key",
            "--method", "prop", "--steps", "30", "--holdout", "0", "--out", "rel"]
    assert main(argv) == 2  # a factory records no training data
    assert "reach_policy:make records no training dataset: pass --general" in capsys.readouterr().err
    assert main([*argv, "--general", "general"]) == 0
    out = capsys.readouterr().out
    assert "Run it: steerlab evaluate rel --key alice.key --env steerlab/PointReach-v0" in out
    base_cfg = json.loads((in_user_folder / "rel/public_base/config.json").read_text())
    assert base_cfg["policy_type"] == "factory" and base_cfg["config"]["factory"] == "reach_policy:make"
    # the release's base is the factory's policy, weights and all
    released, fresh = load_policy(in_user_folder / "rel/public_base"), load_policy("reach_policy:make")
    for k, v in fresh.state_dict().items():
        assert torch.equal(released.state_dict()[k], v)
    assert main(["evaluate", "rel", "--key", "alice.key", "--env", "steerlab/PointReach-v0", "--episodes", "1",
                 "--n-envs", "1", "--max-steps", "5"]) == 0
    assert main(["attack", "rel", "--key", "alice.key", "--attacks", "random_keys", "--quick"]) == 0
    assert json.loads((in_user_folder / "rel.attack-seed0-quick.json").read_text())["overall"]["attempts"] > 0


def test_pretrain_vib_only_takes_a_factory_and_requires_a_dataset(in_user_folder, capsys):
    assert main(["pretrain", "--vib-only", "--from", "reach_policy:make", "--out", "vib"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dataset is required" in err[0] and "meta/info.json" not in err[0]
    assert main(["pretrain", "--vib-only", "--dataset", "x", "--out", "vib"]) == 2
    assert "--vib-only needs --from" in capsys.readouterr().err
    assert not (in_user_folder / "vib").exists()
