import json
import os
import stat

import pytest
import torch

from steerlab.cli import main
from steerlab.privacy.keys import (
    InsecureKeyFileError,
    KeyExistsError,
    KeyFormatError,
    derive_key,
    flip_bits,
    generate_key,
    load_key_file,
    near_miss_keys,
    new_salt,
    save_key_file,
)


def test_generated_keys_are_128_bit_and_distinct():
    a, b = generate_key(), generate_key()
    assert a.n_bits == 128 and a.bits().shape == (128,) and set(a.bits().unique().tolist()) <= {0.0, 1.0}
    assert a.raw != b.raw


def test_passphrase_derivation_is_deterministic_per_salt():
    salt = new_salt()
    assert derive_key("correct horse", salt).raw == derive_key("correct horse", salt).raw
    assert derive_key("correct horse", salt).raw != derive_key("correct horse", new_salt()).raw
    assert derive_key("correct horse", salt).raw != derive_key("correct horsf", salt).raw
    with pytest.raises(KeyFormatError, match="empty"):
        derive_key("", salt)
    assert derive_key("  a b c d e f g h  ", salt).n_bits == 128  # 8 non-space characters are enough


def test_key_file_round_trip_mode_0600_and_no_overwrite(tmp_path):
    key = generate_key()
    path = save_key_file(tmp_path / "alice.key", key, user="alice")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key_file(path).raw == key.raw
    with pytest.raises(KeyExistsError):
        save_key_file(path, generate_key())


def test_repr_never_shows_key_material():
    key = generate_key()
    text = repr(key) + str(key)
    assert key.raw.hex() not in text and "".join(str(int(b)) for b in key.bits()) not in text


@pytest.mark.parametrize("content,match", [
    ("not json", "not JSON"),
    (json.dumps({"format": "other"}), "format"),
    (json.dumps({"format": "steerlab-key", "version": 9}), "version"),
    (json.dumps({"format": "steerlab-key", "version": 1, "bits": 128, "key_hex": "zz-secret-zz"}), "hexadecimal"),
    (json.dumps({"format": "steerlab-key", "version": 1, "bits": 128, "key_hex": "ab" * 8}), "does not match"),
])
def test_bad_key_files_give_clear_errors_without_echoing(tmp_path, content, match):
    p = tmp_path / "bad.key"
    p.write_text(content)
    p.chmod(0o600)
    with pytest.raises(KeyFormatError, match=match) as err:
        load_key_file(p)
    assert "zz-secret-zz" not in str(err.value)


def test_near_miss_keys_flip_the_requested_number_of_bits():
    key = generate_key().bits()
    g = torch.Generator().manual_seed(0)
    near = near_miss_keys(key, 50, 4, g)
    dist = (near != key).sum(1)
    assert dist.min() >= 1 and dist.max() <= 4
    assert int((flip_bits(key, 7, g) != key).sum()) == 7


def test_keygen_cli_passphrase_encrypts_the_key_file(tmp_path, monkeypatch, capsys):
    """v1 stored the passphrase-derived key in clear beside its salt (the passphrase added nothing); now the
    file holds a random key encrypted under scrypt(passphrase), N >= 2^17, and loading asks for it."""
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("my secret phrase\n"))
    assert main(["keygen", "--passphrase", "--out", str(tmp_path / "k.key")]) == 0
    text = (tmp_path / "k.key").read_text()
    doc = json.loads(text)
    assert "my secret phrase" not in text and "key_hex" not in doc
    assert doc["kdf"]["name"] == "scrypt" and doc["kdf"]["n"] >= 2**17
    key = load_key_file(tmp_path / "k.key", passphrase="my secret phrase")
    assert key.n_bits == 128 and key.raw.hex() not in text and key.raw.hex() not in capsys.readouterr().out
    with pytest.raises(KeyFormatError, match="wrong passphrase"):
        load_key_file(tmp_path / "k.key", passphrase="my secret phrasf")
    with pytest.raises(KeyFormatError, match="protected by a passphrase"):
        load_key_file(tmp_path / "k.key")
    doc["kdf"]["n"] = 2**10  # a file weakened by editing its cost is refused, not opened quickly
    weak = tmp_path / "weak.key"
    weak.write_text(json.dumps(doc))
    weak.chmod(0o600)
    with pytest.raises(KeyFormatError, match="below"):
        load_key_file(weak, passphrase="my secret phrase")


@pytest.mark.parametrize("bits", ["8", "64", "120"])
def test_keys_under_128_bits_are_refused_by_keygen_loading_and_personalize(tmp_path, capsys, bits):
    assert main(["keygen", "--bits", bits, "--out", str(tmp_path / "k.key")]) == 2
    assert "at least 128" in capsys.readouterr().err and not (tmp_path / "k.key").exists()
    short = tmp_path / "short.key"  # a short key written by an older steerlab or by hand
    short.write_text(json.dumps({"format": "steerlab-key", "version": 1, "bits": int(bits) // 8 * 8,
                                 "key_hex": "ab" * (int(bits) // 8)}))
    short.chmod(0o600)
    with pytest.raises(KeyFormatError, match="at least 128"):
        load_key_file(short)
    assert main(["personalize", "--task", "point_robot", "--keys", str(short), "--out", str(tmp_path / "run"),
                 "--steps", "5"]) == 2
    assert "at least 128" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_duplicate_keys_are_refused(tmp_path, capsys):
    from steerlab.privacy.methods import PersonalizeConfig, build_personalized
    from steerlab.privacy.tasks.registry import PointRobotTask

    a = save_key_file(tmp_path / "a.key", generate_key())
    b = tmp_path / "b.key"  # another file, the same key bytes
    b.write_bytes(a.read_bytes())
    b.chmod(0o600)
    for keys in ([a, a], [a, b]):
        assert main(["personalize", "--task", "point_robot", "--keys", *map(str, keys), "--out",
                     str(tmp_path / "run"), "--steps", "5"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "same key" in err and not (tmp_path / "run").exists()
    key = load_key_file(a)
    with pytest.raises(KeyFormatError, match="same key"):  # the Python API too
        build_personalized("sealed", PointRobotTask(n_users=2), None, [key, key], PersonalizeConfig(steps=5))


def test_key_file_owned_by_another_user_or_in_a_writable_folder_is_refused(tmp_path):
    path = save_key_file(tmp_path / "keys" / "alice.key", generate_key())
    if os.getuid() == 0:  # only root can hand a file to someone else
        os.chown(path, 12345, -1)
        with pytest.raises(InsecureKeyFileError, match="owned by another user"):
            load_key_file(path)
        os.chown(path, 0, -1)
    os.chmod(path.parent, 0o777)  # anyone could swap the key file
    with pytest.raises(InsecureKeyFileError, match="writable by others"):
        load_key_file(path)
    os.chmod(path.parent, 0o1777)  # sticky (like /tmp): others cannot rename or delete our file
    assert load_key_file(path).n_bits == 128
    os.chmod(path.parent, 0o700)


# ----------------------------------------------------------------------------- issue 10, one test per defect
def test_keygen_onto_existing_file_is_one_line_error_and_keeps_the_file(tmp_path, capsys):
    path = tmp_path / "alice.key"
    assert main(["keygen", "--out", str(path)]) == 0
    before = path.read_bytes()
    capsys.readouterr()
    assert main(["keygen", "--out", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already exists" in err and "Traceback" not in err
    assert path.read_bytes() == before


def test_key_file_readable_by_others_is_refused_unless_allow_insecure(tmp_path, capsys):
    path = save_key_file(tmp_path / "alice.key", generate_key())
    os.chmod(path, 0o644)
    with pytest.raises(InsecureKeyFileError, match="chmod 600"):
        load_key_file(path)
    assert load_key_file(path, allow_insecure=True).n_bits == 128
    assert "warning" in capsys.readouterr().err
    os.chmod(path, 0o640)  # group-readable counts too
    with pytest.raises(InsecureKeyFileError):
        load_key_file(path)
    # the CLI: one line, exit 2, nothing written
    assert main(["personalize", "--task", "point_robot", "--keys", str(path), "--out", str(tmp_path / "run"),
                 "--steps", "5"]) == 2
    assert "accessible by others" in capsys.readouterr().err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("phrase", ["   ", "short", "a b c d e f g", "\t1234567 "])
def test_passphrase_shorter_than_8_non_space_characters_is_rejected(tmp_path, monkeypatch, capsys, phrase):
    import io

    with pytest.raises(KeyFormatError, match="too short"):
        derive_key(phrase, new_salt())
    monkeypatch.setattr("sys.stdin", io.StringIO(phrase + "\n"))
    assert main(["keygen", "--passphrase", "--out", str(tmp_path / "k.key")]) == 2
    assert "too short" in capsys.readouterr().err and not (tmp_path / "k.key").exists()


def test_key_files_of_different_lengths_are_one_line_error(tmp_path, capsys):
    a = save_key_file(tmp_path / "a.key", generate_key(128))
    b = save_key_file(tmp_path / "b.key", generate_key(256))  # (64 bits: now refused as too short)
    assert main(["personalize", "--task", "point_robot", "--keys", str(a), str(b), "--out", str(tmp_path / "run"),
                 "--steps", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different lengths" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("steps", ["0", "-5", "x"])
def test_personalize_steps_zero_or_negative_is_rejected(tmp_path, capsys, steps):
    key = save_key_file(tmp_path / "a.key", generate_key())
    with pytest.raises(SystemExit) as exit_:
        main(["personalize", "--task", "point_robot", "--keys", str(key), "--out", str(tmp_path / "run"),
              "--steps", steps])
    assert exit_.value.code == 2 and "--steps" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
