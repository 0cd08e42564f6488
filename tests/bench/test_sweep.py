"""Ray sweeps that work on a cluster: inputs shipped to the worker, artifacts returned to the driver."""

import json
import os
import shutil
from pathlib import Path

import pytest

from steerlab.bench.sweep import (
    Shipping,
    collect_artifacts,
    finish_shipped,
    pack_folder,
    run_grid,
    run_shipped,
    unpack_folder,
    write_artifacts,
)


def fake_run(cell: dict) -> dict:
    """A run the way finetune_cell does one: read the base, write a run folder (small files + a big state)."""
    base = Path(cell["base"])
    weights = (base / "model.safetensors").read_bytes()
    out = Path(cell["out"])
    (out / "policy").mkdir(parents=True)
    (out / "training_state").mkdir()
    (out / "config.json").write_text(json.dumps({"base": str(base)}))
    (out / "metrics.jsonl").write_text('{"step": 0}\n')
    (out / "policy" / "model.safetensors").write_bytes(weights[::-1])
    (out / "training_state" / "replay.npz").write_bytes(b"x" * 1000)  # stays on the worker
    (out / "result.json").write_text(json.dumps({"ok": True}))
    return {"cwd": os.getcwd(), "base": str(base), "out": str(out), "n": len(weights)}


def _base(tmp_path) -> Path:
    base = tmp_path / "driver" / "base"
    (base / "sub").mkdir(parents=True)
    (base / "model.safetensors").write_bytes(b"weights-123")
    (base / "config.json").write_text("{}")
    (base / "sub" / "extra.txt").write_text("x")
    return base


def test_pack_unpack_round_trip_and_refuses_escapes(tmp_path):
    files = pack_folder(_base(tmp_path))
    assert files == {"config.json": b"{}", "model.safetensors": b"weights-123", "sub/extra.txt": b"x"}
    dest = unpack_folder(files, tmp_path / "copy")
    assert pack_folder(dest) == files
    with pytest.raises(ValueError, match="outside"):
        unpack_folder({"../evil": b"x"}, tmp_path / "copy2")
    with pytest.raises(FileNotFoundError):
        pack_folder(tmp_path / "missing")


def test_worker_reads_only_shipped_inputs_runs_in_its_own_dir_and_returns_small_artifacts(tmp_path):
    base = _base(tmp_path)
    run_dir = tmp_path / "driver" / "runs" / "task__zprl__seed0"
    cell = {"task": "t", "base": str(base), "out": str(run_dir)}
    ship = Shipping(inputs=("base",), output="out")
    blobs = {"base": pack_folder(base)}
    shutil.rmtree(base)  # a remote node has no copy of the driver's files
    returned = run_shipped(fake_run, cell, ship, blobs)
    res = returned["result"]
    assert res["n"] == len(b"weights-123")
    assert not Path(res["cwd"]).exists() and not Path(res["out"]).exists()  # worker dir used, then removed
    assert Path(res["cwd"]) != Path.cwd() and res["base"] != str(base)
    assert set(returned["artifacts"]) == {"config.json", "metrics.jsonl", "result.json", "policy/model.safetensors"}
    assert not run_dir.exists()  # nothing written on the driver's disk by the worker
    out = finish_shipped(cell, ship, returned)
    assert out == res
    assert (run_dir / "policy" / "model.safetensors").read_bytes() == b"weights-123"[::-1]
    assert json.loads((run_dir / "result.json").read_text()) == {"ok": True}
    assert not (run_dir / "training_state").exists()


def test_driver_writes_result_last_and_keeps_other_files(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    order = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (order.append(Path(b).name), real_replace(a, b)))
    write_artifacts({"result.json": b"{}", "config.json": b"{}", "z.jsonl": b""}, run_dir, last=("result.json",))
    assert order[-1] == "result.json" and set(order) == {"result.json", "config.json", "z.jsonl"}
    assert (run_dir / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="outside"):
        write_artifacts({"../x": b""}, run_dir)


def test_collect_artifacts_patterns(tmp_path):
    (tmp_path / "policy").mkdir()
    for rel in ("config.json", "result.json", "policy/a.bin", "training_state.bin", ".lock", ".claim"):
        (tmp_path / rel).write_bytes(b"1")
    assert set(collect_artifacts(tmp_path, ("config.json", "policy/*"))) == {"config.json", "policy/a.bin"}
    assert ".lock" not in collect_artifacts(tmp_path, ("*",)) and ".claim" not in collect_artifacts(tmp_path, ("*",))
    assert collect_artifacts(tmp_path / "none", ("*",)) == {}


def test_grid_without_ray_runs_locally_and_skips_done(tmp_path):
    cells = [{"i": i} for i in range(3)]
    seen = run_grid(cells, lambda c: {"i": c["i"]}, lambda c: c["i"] == 1, use_ray=False)
    assert [r["i"] for r in seen] == [0, 2]


@pytest.mark.slow
def test_ray_grid_ships_inputs_and_returns_artifacts(tmp_path):
    ray = pytest.importorskip("ray")
    import sys

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    base = _base(tmp_path)
    cells = [{"task": f"t{i}", "base": str(base), "out": str(tmp_path / "driver" / "runs" / f"t{i}")} for i in range(2)]
    try:
        res = run_grid(cells, fake_run, lambda c: (Path(c["out"]) / "result.json").is_file(), use_ray=True,
                       num_cpus=1, ship=Shipping(inputs=("base",), output="out"))
    finally:
        ray.shutdown()
    assert len(res) == 2 and all(r["base"] != str(base) for r in res)
    _assert_runs_on_driver(cells)


def _assert_runs_on_driver(cells: list[dict]) -> None:
    """Each cell's small files were written on the driver's side; the worker's big state stayed behind."""
    for c in cells:
        assert (Path(c["out"]) / "policy" / "model.safetensors").read_bytes() == b"weights-123"[::-1]
        assert json.loads((Path(c["out"]) / "result.json").read_text()) == {"ok": True}
        assert not (Path(c["out"]) / "training_state").exists()


def fake_run_where(cell: dict) -> dict:
    import ray

    return {**fake_run(cell), "node": ray.get_runtime_context().get_node_id()}


@pytest.mark.slow
def test_ray_grid_on_a_second_node_with_its_own_working_dir(tmp_path, monkeypatch):
    """A real two-node cluster: the head has no CPUs, so every cell runs on a second node started from its own
    working directory; the driver's files reach it only through Ray and its run folders come back to the driver."""
    ray = pytest.importorskip("ray")
    import sys

    from ray.cluster_utils import Cluster

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    base = _base(tmp_path)
    node_dir, driver_dir = tmp_path / "node", tmp_path / "driver"
    node_dir.mkdir()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        monkeypatch.chdir(node_dir)  # the node's raylet, and so its workers, start here
        node = cluster.add_node(num_cpus=1)
        head_id, node_id = cluster.head_node.node_id, node.node_id
        monkeypatch.chdir(driver_dir)
        cells = [{"task": f"t{i}", "base": str(base), "out": str(driver_dir / "runs" / f"t{i}")} for i in range(2)]
        res = run_grid(cells, fake_run_where, lambda c: (Path(c["out"]) / "result.json").is_file(), use_ray=True,
                       address=cluster.address, ship=Shipping(inputs=("base",), output="out"))
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert len(res) == 2 and {r["node"] for r in res} == {node_id} != {head_id}
    for r in res:  # each cell ran in a temp dir on the node, read a shipped copy of the base, left nothing there
        assert r["base"] != str(base) and not Path(r["cwd"]).exists() and not str(r["cwd"]).startswith(str(tmp_path))
    assert list(node_dir.iterdir()) == []
    _assert_runs_on_driver(cells)
