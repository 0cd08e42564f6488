"""Private online personalization (finetune --key): the shareable output is the user's sealed part."""

import base64
import json

import numpy as np
import pytest
import torch

from steerlab.cli import main
from steerlab.core.checkpoint import load_policy, read_checkpoint
from steerlab.privacy.keys import load_key_file
from steerlab.privacy.release import load_personal

TINY = ["--method", "zprl", "--env", "reach-v3", "--env-steps", "100", "--max-steps", "20", "--warmup", "2",
        "--eval-every", "30", "--eval-episodes", "1", "--checkpoint-every", "30", "--buffer-size", "500",
        "--final-episodes", "0", "--sampler-noise-scale", "0", "--no-tensorboard", "--sac.hidden", "16",
        "--sac.batch-size", "4", "--steering.critic-warmup", "0"]
OFFSETS = {"alice": [0.08, 0.0, 0.0], "bob": [0.0, -0.08, 0.0]}


@pytest.fixture(scope="module")
def online(base_ckpt, tmp_path_factory):
    """Two users' private online runs (their own goal offsets) over one tiny base, and a release of both."""
    root = tmp_path_factory.mktemp("online")
    keys, runs = {}, {}
    for seed, (user, offset) in enumerate(OFFSETS.items()):
        keys[user] = root / f"{user}.key"
        assert main(["keygen", "--out", str(keys[user])]) == 0
        runs[user] = root / "runs" / user
        assert main(["finetune", str(base_ckpt), *TINY, "--seed", str(seed), "--env-kwargs",
                     json.dumps({"goal_offset": offset}), "--out", str(runs[user]), "--key", str(keys[user])]) == 0
    release = root / "release"
    assert main(["release", "--part", f"{runs['alice']}.sealed", str(keys["alice"]), "--part", f"{runs['bob']}.sealed",
                 str(keys["bob"]), "--out", str(release)]) == 0
    return {"root": root, "keys": keys, "runs": runs, "release": release, "base": base_ckpt}


def actions(policy, seed=0):
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(16, 39, generator=gen)
    noise = torch.randn(16, *policy.chunk_shape if hasattr(policy, "chunk_shape") else (8, 4), generator=gen)
    return np.asarray(policy.predict_chunk(obs, noise=noise))


def files(folder):
    return [p for p in folder.rglob("*") if p.is_file()]


def test_no_key_bytes_and_no_clear_steering_weights_in_what_is_shared(online):
    key = load_key_file(online["keys"]["alice"])
    needles = {"raw": key.raw, "hex": key.raw.hex().encode(), "HEX": key.raw.hex().upper().encode(),
               "b64": base64.b64encode(key.raw), "b64url": base64.urlsafe_b64encode(key.raw).rstrip(b"=")}
    _, run_tensors = read_checkpoint(online["runs"]["alice"] / "policy")
    actor = {k: v for k, v in run_tensors.items() if k.startswith("actor.") and v.numel() >= 8}
    assert actor
    offset = json.dumps(OFFSETS["alice"]).encode()
    for folder in (online["runs"]["alice"].with_name("alice.sealed"), online["release"]):
        for path in files(folder):
            data = path.read_bytes()
            for name, needle in needles.items():
                assert needle not in data, f"key ({name}) in {path}"
            for name, t in actor.items():
                assert t.contiguous().view(torch.uint8).numpy().tobytes()[:32] not in data, f"{name} in clear in {path}"
            assert offset not in data and b"goal_offset" not in data, f"the user's goal in {path}"
    for path in files(online["runs"]["alice"]):  # the private run folder holds no key either
        assert key.raw.hex().encode() not in path.read_bytes(), path
    assert online["runs"]["alice"].stat().st_mode & 0o077 == 0  # the run folder is private


def test_key_runs_the_users_steered_policy_and_no_or_wrong_key_the_base_bit_for_bit(online):
    base = actions(load_policy(online["base"]))
    for user in OFFSETS:
        own = actions(load_policy(online["runs"][user] / "policy"))
        key = load_key_file(online["keys"][user])
        for folder in (online["runs"][user].with_name(f"{user}.sealed"), online["release"]):
            policy, status = load_personal(folder, key)
            assert status["personal_opened"] is True
            assert np.array_equal(actions(policy), own)
            assert policy.env_spec["kwargs"]["goal_offset"] == pytest.approx(OFFSETS[user])
    alice = actions(load_policy(online["runs"]["alice"] / "policy"))
    assert not np.array_equal(alice, actions(load_policy(online["runs"]["bob"] / "policy")))
    assert not np.array_equal(alice, base)  # the steering changed the policy: the checks below can fail
    wrong = online["root"] / "mallory.key"
    assert main(["keygen", "--out", str(wrong)]) == 0
    for key in (None, load_key_file(wrong)):
        policy, status = load_personal(online["release"], key)
        assert status["personal_opened"] is False
        assert np.abs(actions(policy) - base).max() == 0.0


def test_a_damaged_online_blob_affects_only_its_user(online, tmp_path):
    import shutil

    release = tmp_path / "release"
    shutil.copytree(online["release"], release)
    blob = release / "sealed" / "user0.sealed"
    data = bytearray(blob.read_bytes())
    data[-5] ^= 0xFF
    blob.write_bytes(bytes(data))
    alice, bob = (load_key_file(online["keys"][u]) for u in ("alice", "bob"))
    policy, status = load_personal(release, alice)
    assert status["personal_opened"] is False and "damaged" in status["personal_reason"]
    assert np.array_equal(actions(policy), actions(load_policy(online["base"])))
    policy, status = load_personal(release, bob)
    assert status["personal_opened"] is True and status["personal_slot"] == 1
    assert np.array_equal(actions(policy), actions(load_policy(online["runs"]["bob"] / "policy")))


def test_evaluate_with_the_key_runs_in_the_users_env(online, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(online["release"]), "--key", str(online["keys"]["bob"]), "--episodes", "1",
                 "--n-envs", "1", "--max-steps", "5", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["personal_opened"] is True and result["personal_slot"] == 1
    assert "personal policy (sealed blob 1)" in capsys.readouterr().out


def test_release_refuses_a_key_that_opens_no_part(online, tmp_path, capsys):
    assert main(["release", "--part", f"{online['runs']['alice']}.sealed", str(online["keys"]["bob"]),
                 "--out", str(tmp_path / "r")]) == 2
    assert "opens no sealed part" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
