import json
import os
import stat

import pytest
import torch

from steerlab.cli import main
from steerlab.privacy.keys import (
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


def test_key_file_round_trip_mode_0600_and_no_overwrite(tmp_path):
    key = generate_key()
    path = save_key_file(tmp_path / "alice.key", key, user="alice")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key_file(path).raw == key.raw
    with pytest.raises(FileExistsError):
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


def test_keygen_cli_passphrase_is_not_stored(tmp_path, monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("my secret phrase\n"))
    assert main(["keygen", "--passphrase", "--out", str(tmp_path / "k.key")]) == 0
    text = (tmp_path / "k.key").read_text()
    assert "my secret phrase" not in text and json.loads(text)["kdf"]["name"] == "scrypt"
    out = capsys.readouterr().out
    assert json.loads(text)["key_hex"] not in out
