"""Sealed release v2 (issue 24): one damaged blob blocks only its user, every tamper case is detected or
reported, and a key that opens nothing says why (wrong key vs damaged blob)."""

import hashlib
import json
import shutil

import pytest
import torch

from steerlab.cli import main
from steerlab.core.errors import CheckpointError
from steerlab.privacy.keys import generate_key, load_key_file
from steerlab.privacy.release import load_personal
from steerlab.privacy.sealed.blobs import MAGIC, SealedKeyError, config_sha256
from steerlab.privacy.tasks.registry import PointRobotTask


def _build(root, name, keys):
    out = root / name
    assert main(["personalize", "--task", "point_robot", "--keys", *map(str, keys), "--steps", "40",
                 "--out", str(out)]) == 0  # sealed is the default method
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("sealed_v2")
    keys = [root / "alice.key", root / "bob.key"]
    for k in keys:
        assert main(["keygen", "--out", str(k)]) == 0
    return root, keys, _build(root, "a", keys)


@pytest.fixture
def release(built, tmp_path):
    root, keys, a = built
    out = tmp_path / "rel"
    shutil.copytree(a, out)
    return out, [load_key_file(k) for k in keys]


def _config(out):
    return json.loads((out / "config.json").read_text())


def _write_config(out, meta):
    (out / "config.json").write_text(json.dumps(meta))


def _rehash(out, slot):
    """The attacker who also updates the manifest, so the damage reaches the header checks."""
    meta = _config(out)
    meta["config"]["manifest"][slot]["sha256"] = hashlib.sha256((out / f"sealed/user{slot}.sealed").read_bytes()).hexdigest()
    _write_config(out, meta)


def _flip(blob: bytes, i: int) -> bytes:
    b = bytearray(blob)
    b[i] ^= 0x01
    return bytes(b)


def _header_at(blob: bytes, field: str) -> int:
    return 12 + blob[12:].index(field.encode())


DAMAGE = {
    "truncated": lambda b: b[: len(b) // 2],
    "empty": lambda b: b"",
    "magic": lambda b: _flip(b, 0),
    "length": lambda b: _flip(b, 10),
    "format": lambda b: _flip(b, _header_at(b, "steerlab-sealed") + 3),
    "header_list": lambda b: MAGIC + len(b"[1]").to_bytes(4, "big") + b"[1]",
    "header_number": lambda b: MAGIC + (1).to_bytes(4, "big") + b"7",
    "old_version": lambda b: b.replace(b'"version": 2', b'"version": 1'),
    "ciphertext": lambda b: _flip(b, len(b) - 20),
}


@pytest.mark.parametrize("rehash", [False, True])
@pytest.mark.parametrize("damage", [*DAMAGE, "directory", "missing"])
def test_one_damaged_blob_blocks_only_its_user(release, capsys, damage, rehash):
    out, (alice, bob) = release
    blob_path = out / "sealed" / "user1.sealed"
    if damage == "directory":
        blob_path.unlink()
        blob_path.mkdir()
    elif damage == "missing":
        blob_path.unlink()
    else:
        blob_path.write_bytes(DAMAGE[damage](blob_path.read_bytes()))
        if rehash:
            _rehash(out, 1)
    capsys.readouterr()
    _, ok = load_personal(out, alice)
    assert ok["personal_opened"] is True and ok["personal_slot"] == 0
    # damage behind an intact header and a re-hashed manifest is visible to its own key only (below)
    if not (rehash and damage in ("truncated", "ciphertext")):
        assert "1" in ok["damaged_blobs"]
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "blob 1" in err[0] and "Traceback" not in err[0]  # one line naming the blob
    policy, st = load_personal(out, bob)
    assert st["personal_opened"] is False and "blob 1 damaged" in st["personal_reason"]
    x, _ = PointRobotTask(n_users=2).test_general()
    with torch.no_grad():
        assert torch.equal(policy(x), load_personal(out, None)[0](x))  # bob runs the base, told why
    with pytest.raises(SealedKeyError, match="blob 1 damaged"):
        load_personal(out, bob, strict=True)
    if damage == "old_version" and rehash:
        assert "re-run `steerlab personalize`" in st["damaged_blobs"]["1"]


def test_wrong_key_is_told_apart_from_a_damaged_blob_and_strict_refuses(release):
    out, (alice, _) = release
    _, st = load_personal(out, generate_key())
    assert st["personal_opened"] is False and st["personal_reason"] == "no blob opened with this key"
    assert st["damaged_blobs"] == {}
    with pytest.raises(SealedKeyError, match="no blob opened"):
        load_personal(out, generate_key(), strict=True)
    assert load_personal(out, alice, strict=True)[1]["personal_opened"] is True


def test_editing_the_base_config_is_detected(release):
    out, (alice, _) = release
    meta = _config(out)
    meta["config"]["base"]["config"]["num_inference_steps"] = 1  # what changed a flow policy silently in v1
    _write_config(out, meta)
    with pytest.raises(CheckpointError, match="config .* was edited"):
        load_personal(out, alice)
    meta["config"]["base_config_sha256"] = config_sha256(meta["config"]["base"])  # and its recorded hash
    _write_config(out, meta)
    _, st = load_personal(out, alice)  # the blobs' authenticated headers still name the original config
    assert st["personal_opened"] is False and "different base config" in st["personal_reason"]


def test_blob_replayed_from_another_release_on_the_same_base_is_detected(built, release):
    root, keys, _ = built
    other = root / "b" if (root / "b").exists() else _build(root, "b", keys)  # same base, same keys
    out, (alice, _) = release
    assert _config(other)["config"]["base_sha256"] == _config(out)["config"]["base_sha256"]
    shutil.copyfile(other / "sealed" / "user0.sealed", out / "sealed" / "user0.sealed")
    _rehash(out, 0)
    _, st = load_personal(out, alice)
    assert st["personal_opened"] is False and "another release" in st["damaged_blobs"]["0"]


def test_deleting_a_blob_is_detected_even_with_n_blobs_and_manifest_edited(release, capsys):
    out, (alice, bob) = release
    (out / "sealed" / "user1.sealed").unlink()
    meta = _config(out)
    meta["config"]["n_blobs"] = 1
    meta["config"]["manifest"] = meta["config"]["manifest"][:1]
    _write_config(out, meta)
    _, st = load_personal(out, alice)  # alice's blob is authentic: it says it was sealed with 2 blobs
    assert st["personal_opened"] is True and "removed" in " ".join(st["release_warnings"])
    assert "removed" in capsys.readouterr().err
    assert load_personal(out, bob)[1]["personal_opened"] is False  # bob: downgraded, and told his key opened nothing


def test_swapped_slots_are_detected(release):
    out, (alice, bob) = release
    s = out / "sealed"
    s.joinpath("user0.sealed").rename(s / "tmp")
    s.joinpath("user1.sealed").rename(s / "user0.sealed")
    s.joinpath("tmp").rename(s / "user1.sealed")
    _rehash(out, 0)
    _rehash(out, 1)
    for key in (alice, bob):
        _, st = load_personal(out, key)
        assert st["personal_opened"] is False and "slot" in st["personal_reason"]


def test_a_format_1_release_is_refused_with_a_rerun_hint(release):
    out, (alice, _) = release
    meta = _config(out)
    del meta["config"]["sealed_version"]
    _write_config(out, meta)
    with pytest.raises(CheckpointError, match="format 1.*re-run `steerlab personalize`"):
        load_personal(out, alice)


def test_personalize_defaults_to_sealed_and_never_calls_a_keyed_model_private(built, capsys):
    root, keys, a = built
    meta = _config(a)
    assert meta["policy_type"] == "sealed" and meta["config"]["method"] == "sealed"
    assert (root / "a.private" / "cases.json").is_file() and not (a / "cases.json").exists()
    from steerlab.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser("personalize").parse_args(["personalize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "sealed (default" in text and "recoverable from its weights" in text
