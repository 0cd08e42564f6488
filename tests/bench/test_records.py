"""Per-run records as one deterministic archive per record folder (steerlab.bench.records)."""

import io
import tarfile

import pytest

from steerlab.bench import records
from steerlab.core.errors import UserError


def make_runs(root):
    run = root / "runs" / "finetune" / "push-wall-v3__zprl__seed0"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"a": 1}')
    (run / "metrics.jsonl").write_text('{"step": 0}\n')
    (run / "model.safetensors").write_bytes(b"weights are never archived")
    cells = root / "results" / "privacy_runs"
    cells.mkdir(parents=True)
    (cells / "cell.json").write_text('{"score": 0.5}')
    return run


def test_pack_is_deterministic_and_unpack_restores_only_the_records(tmp_path):
    make_runs(tmp_path / "a")
    first = records.pack(tmp_path / "a")
    assert sorted(p.name for p in first) == ["results__privacy_runs.tar.gz", "runs__finetune.tar.gz"]
    assert records.pack(tmp_path / "a") == []  # same records, same bytes: nothing changes
    fresh = tmp_path / "b"
    assert records.unpack(fresh, tmp_path / "a" / "records") == 3
    run = fresh / "runs" / "finetune" / "push-wall-v3__zprl__seed0"
    assert (run / "config.json").read_text() == '{"a": 1}' and not (run / "model.safetensors").exists()
    assert (fresh / "results" / "privacy_runs" / "cell.json").read_text() == '{"score": 0.5}'


def test_unpack_never_overwrites_a_local_record(tmp_path):
    run = make_runs(tmp_path)
    records.pack(tmp_path)
    (run / "config.json").write_text('{"a": 2}')  # a newer local record
    assert records.unpack(tmp_path) == 0
    assert (run / "config.json").read_text() == '{"a": 2}'


def test_an_archive_with_an_unsafe_path_is_refused(tmp_path):
    (tmp_path / "records").mkdir()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("../../escape.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    (tmp_path / "records" / "runs__x.tar.gz").write_bytes(raw.getvalue())
    with pytest.raises(UserError, match="unsafe entry"):
        records.unpack(tmp_path)
    assert not (tmp_path.parent / "escape.json").exists()


def test_a_run_in_progress_is_archived_only_once_it_has_finished(tmp_path):
    run = make_runs(tmp_path / "a")
    (run / "training_state").mkdir()  # resumable state, no result.json yet: a run in flight
    (run / "policy").mkdir()
    (run / "policy" / "config.json").write_text('{"p": 1}')
    records.pack(tmp_path / "a")
    assert records.unpack(tmp_path / "b", tmp_path / "a" / "records") == 1  # the per-cell record only
    (run / "result.json").write_text('{"auc": 0.5}')
    records.pack(tmp_path / "a")
    assert records.unpack(tmp_path / "c", tmp_path / "a" / "records") == 5


def test_base_checkpoint_folders_are_not_records(tmp_path):
    make_runs(tmp_path / "a")
    ckpt = tmp_path / "a" / "runs" / "pretrain" / "push-wall-v3__mixed__seed0"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text('{"policy": 1}')
    assert "runs/pretrain" not in records.record_folders(tmp_path / "a")
    assert "runs__pretrain.tar.gz" not in {p.name for p in records.pack(tmp_path / "a")}
