"""`--device` on `steerlab personalize` and `steerlab attack`: the device is resolved first (an absent or unknown
one is a one-line error, before anything is written), "cpu" and "auto" (= cpu here) give the same release bit for
bit, and what is saved holds CPU tensors (loads anywhere)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from steerlab.cli import main
from steerlab.core.devices import compute_device, place, use_compute_device
from steerlab.privacy.tasks.registry import PointRobotTask


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory):
    key = tmp_path_factory.mktemp("keys") / "alice.key"
    assert main(["keygen", "--out", str(key)]) == 0
    return key


def _personalize(key, out, device):
    return main(["personalize", "--task", "point_robot", "--keys", str(key), "--out", str(out), "--steps", "20",
                 "--method", "prop", "--device", device])


@pytest.mark.skipif(torch.cuda.is_available(), reason="'auto' resolves to the CPU only where no GPU is visible")
def test_cpu_and_auto_give_the_same_release_and_attack_report(keyfile, tmp_path):
    for device in ("cpu", "auto"):
        assert _personalize(keyfile, tmp_path / device, device) == 0
    a, b = load_file(tmp_path / "cpu" / "model.safetensors"), load_file(tmp_path / "auto" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(v.device.type == "cpu" for v in a.values())
    reports = {}
    for device in ("cpu", "auto"):
        out = tmp_path / f"attack-{device}.json"
        assert main(["attack", str(tmp_path / "cpu"), "--key", str(keyfile), "--quick", "--attacks", "random_keys",
                     "--out", str(out), "--device", device]) == 0
        report = json.loads(out.read_text())
        for row in report["by_attack"].values():  # wall-clock times differ run to run
            row.pop("seconds", None)
        reports[device] = report
    assert reports["cpu"].pop("device") == reports["auto"].pop("device") == "cpu"
    assert reports["cpu"] == reports["auto"]


@pytest.mark.parametrize("device, match", [("tpu", "unknown device 'tpu'"),
                                           pytest.param("cuda", "no CUDA GPU", marks=pytest.mark.skipif(
                                               torch.cuda.is_available(), reason="checks an absent GPU"))])
def test_bad_device_is_one_line_and_nothing_is_written(keyfile, tmp_path, capsys, device, match):
    assert _personalize(keyfile, tmp_path / "run", device) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "\n" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.private").exists()
    assert main(["attack", str(tmp_path / "whatever"), "--key", str(keyfile), "--device", device]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "\n" not in err


def test_place_is_a_no_op_on_the_cpu():
    task = PointRobotTask(hidden=16)
    model = task.make_model()
    with use_compute_device("cpu"):
        assert compute_device().type == "cpu"
        assert place(model) is model
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
    assert compute_device().type == "cpu"


def test_amp_runs_placed_calls_in_bf16_and_hands_back_float32(monkeypatch):
    from steerlab.core import devices

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    x = torch.randn(5, 8)
    ref = net(x)
    devices._attach(net, torch.device("cpu"))  # the boundaries `place` gives a module on an accelerator
    torch.testing.assert_close(net(x), ref, rtol=0, atol=0)  # amp off: the same numbers
    monkeypatch.setitem(devices._COMPUTE, "amp", True)  # what use_compute_device(cuda, amp=True) sets
    out = net(x)
    assert out.dtype == torch.float32 and not torch.equal(out, ref)  # computed in bf16, handed back as float32
    torch.testing.assert_close(out, ref, rtol=0.05, atol=0.05)
    out.sum().backward()
    assert net[0].weight.grad.dtype == torch.float32
    assert getattr(devices._DEPTH, "amp", None) is None  # the autocast was left with the outermost call
    monkeypatch.setitem(devices._COMPUTE, "amp", False)
    with pytest.warns(UserWarning, match="--amp does nothing on cpu"), use_compute_device("cpu", amp=True):
        assert devices._COMPUTE["amp"] is False
