import json

import pytest
import torch

from steerlab.cli import main
from steerlab.core.checkpoint import load_policy
from steerlab.core.errors import CheckpointError
from steerlab.core.io import load_tensors
from steerlab.privacy.key_cases import evaluate_key_cases
from steerlab.privacy.keys import UserKey, generate_key, load_key_file
from steerlab.privacy.methods import PersonalizeConfig, build_personalized
from steerlab.privacy.sealed.attack import attack_release
from steerlab.privacy.sealed.blobs import (
    Binding,
    BlobDamagedError,
    SealedKeyError,
    pack,
    read_header,
    seal,
    state_sha256,
    unpack,
    unseal,
)
from steerlab.privacy.tasks.registry import PointRobotTask


@pytest.fixture(scope="module")
def point_robot():
    task = PointRobotTask(hidden=32)
    return task, task.train_base(0, steps=300)


def _sealed(point_robot, method="sealed", steps=300):
    task, base = point_robot
    user = UserKey(bytes(range(16)))
    return task, base, user, build_personalized(method, task, base, [user], PersonalizeConfig(steps=steps))


BIND = Binding("base-hash", "config-hash", "release-a", 2)


def test_seal_authenticates_key_base_and_every_byte():
    key, t = generate_key(), {"w": torch.randn(4, 3)}
    blob = seal(pack({"adapter": (t, {"kind": "full"})}, {"goal_offset": [0.1, 0, 0]}), key, BIND, slot=1)
    parts, personal, _ = unseal(blob, key, BIND, 1)
    assert torch.equal(parts["adapter"][0]["w"], t["w"]) and parts["adapter"][1] == {"kind": "full"}
    assert personal == {"goal_offset": [0.1, 0, 0]}  # the user's options travel inside the ciphertext
    with pytest.raises(SealedKeyError, match="not this key"):
        unseal(blob, generate_key(), BIND, 1)
    with pytest.raises(CheckpointError, match="different base"):
        unseal(blob, key, Binding("another-base", "config-hash", "release-a", 2), 1)
    for i in (len(blob) - 1, len(blob) - 40):  # a flipped tag byte, a flipped ciphertext byte
        bad = bytearray(blob)
        bad[i] ^= 1
        with pytest.raises(BlobDamagedError, match="this key's but fails authentication"):
            unseal(bytes(bad), key, BIND, 1)
    header = read_header(blob)[0]
    tampered = blob.replace(json.dumps(header, sort_keys=True).encode(),
                            json.dumps({**header, "base_sha256": "base-hasx"}, sort_keys=True).encode())
    with pytest.raises(BlobDamagedError):  # the header is associated data: editing it breaks authentication
        unseal(tampered, key, Binding("base-hasx", "config-hash", "release-a", 2), 1)
    # a fresh salt and nonce per file: sealing the same tensors twice gives unrelated bytes
    again = seal(pack({"adapter": (t, {"kind": "full"})}), key, BIND, slot=1)
    assert read_header(again)[0]["salt"] != header["salt"] and again[-64:] != blob[-64:]
    assert "w" not in json.dumps(header) and "goal" not in json.dumps(header)  # names live inside the ciphertext


@pytest.mark.parametrize("binding,slot,match", [
    (Binding("base-hash", "config-hasx", "release-a", 2), 1, "different base config"),
    (Binding("base-hash", "config-hash", "release-b", 2), 1, "another release"),
    (BIND, 0, "slot 1, found in slot 0"),
])
def test_blob_bound_to_base_config_release_and_slot(binding, slot, match):
    key = generate_key()
    blob = seal(pack({"adapter": ({"w": torch.ones(2)}, {"kind": "full"})}), key, BIND, slot=1)
    with pytest.raises(BlobDamagedError, match=match):
        unseal(blob, key, binding, slot)


def test_payload_is_generic_named_tensor_parts_plus_json():
    """A later part (e.g. a steering actor) seals the same way: its own tensors under its own prefix."""
    parts = {"adapter": ({"a.weight": torch.ones(2, 2)}, {"kind": "lora", "rank": 8}),
             "actor": ({"net.0.weight": torch.zeros(3)}, {"obs_dim": 3})}
    back, personal = unpack(pack(parts, {"user": "x"}), "test")
    assert back.keys() == parts.keys() and personal == {"user": "x"}
    assert back["actor"][1] == {"obs_dim": 3} and torch.equal(back["actor"][0]["net.0.weight"], torch.zeros(3))


@pytest.mark.parametrize("method", ["sealed", "sealed_full"])
def test_sealed_right_key_is_personal_and_any_other_key_is_the_base_bitwise(point_robot, method):
    task, base, user, p = _sealed(point_robot, method)
    cases = evaluate_key_cases(p, task, seed=0, n_keys=4)
    assert cases["correct"]["personal"] > 0.9
    x, _ = task.test_general()
    for bits in (None, generate_key().bits(), torch.cat([1 - user.bits()[:1], user.bits()[1:]])):
        assert torch.equal(p.runner(bits)(x), base(x))  # not close to: the base itself
    with pytest.raises(SealedKeyError):
        p.model.set_key(generate_key(), strict=True)


def test_opened_sealed_policy_has_the_base_architecture(point_robot):
    _, base, user, p = _sealed(point_robot)
    opened = p.model.open(user)
    assert [type(m) for m in opened.modules()] == [type(m) for m in base.modules()]  # merged: no extra layers
    assert sum(q.numel() for q in opened.parameters()) == sum(q.numel() for q in base.parameters())


def test_attacks_on_a_sealed_release_only_see_the_base(point_robot):
    from steerlab.privacy.tasks.registry import scores

    task, base, user, p = _sealed(point_robot)
    base_personal = scores(task, lambda x: base(x))["personal"]
    correct = scores(task, lambda x: p.model.open(user)(x))["personal"]
    assert correct > base_personal + 0.5  # there is a personal behaviour to find
    seen = []
    report = attack_release(p.model, task, user.bits(), lambda run: seen.append(1) or 0.0, base_personal, correct,
                            n_random=64, near_bits=(1, 2, 4), n_near=8)
    assert report["budget"] == 64 + 24 + 4 and report["best_of_n"] == 0.0 and report["share"] == 0.0
    assert report["distinct_behaviours"] == 0.0 and not seen  # every attempt gave the base's outputs bit for bit
    assert all(torch.equal(a, b) for a, b in zip(p.model.model.parameters(), base.parameters()))


def test_sealed_cli_release_is_base_bit_for_bit_loads_by_key_and_never_holds_it(tmp_path, capsys):
    alice, bob = tmp_path / "alice.key", tmp_path / "bob.key"
    assert main(["keygen", "--out", str(alice)]) == 0 and main(["keygen", "--out", str(bob)]) == 0
    out = tmp_path / "release"
    assert main(["personalize", "--task", "point_robot", "--keys", str(alice), str(bob), "--method", "sealed",
                 "--steps", "40", "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "sealed").iterdir()) == ["user0.sealed", "user1.sealed"]
    task = PointRobotTask(n_users=2)
    base = task.train_base(0)
    released = load_tensors(out / "model.safetensors")
    assert state_sha256(released) == state_sha256(base.state_dict())  # the public base, bit for bit
    x, _ = task.test_general()
    ka, kb = load_key_file(alice), load_key_file(bob)
    with torch.no_grad():
        assert torch.equal(load_policy(out)(x), base(x))
        pa, pb = load_policy(out, key=ka)(x), load_policy(out, key=kb)(x)
        assert not torch.equal(pa, base(x)) and not torch.equal(pa, pb)
        capsys.readouterr()
        assert torch.equal(load_policy(out, key=generate_key())(x), base(x))
    assert "no blob opened with this key" in capsys.readouterr().err
    for key in (ka, kb):
        bits = "".join(str(int(b)) for b in key.bits())
        for f in out.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                assert key.raw.hex().encode() not in data and bits.encode() not in data and key.raw not in data, f
