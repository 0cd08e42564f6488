"""`--device`: resolution and one-line errors for absent devices."""

import pytest
import torch

from steerlab.core.devices import autocast, resolve_device
from steerlab.core.errors import UserError


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == want


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_absent_cuda_is_one_line():
    with pytest.raises(UserError, match=r"--device cuda: no CUDA GPU") as err:
        resolve_device("cuda")
    assert "\n" not in str(err.value)


def test_unknown_device():
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_amp_on_cpu_warns_and_does_nothing():
    with pytest.warns(UserWarning, match="--amp does nothing on cpu"):
        with autocast(torch.device("cpu"), True):
            assert not torch.is_autocast_enabled()
