"""`sampler_noise_scale`: the frozen sampler's noise in training decisions and in the curve's evaluations."""

import json

import pytest

import steerlab.train.finetune.finetuner as finetune
from steerlab.core.errors import UserError
from steerlab.train.finetune import Finetuner
from tests.train.test_vector_loop import POLICY, _cfg


@pytest.fixture
def toy_policy(policy_module):
    return policy_module("noise_toy_policy", POLICY)


@pytest.mark.parametrize("scale", [0.0, 1.0])
def test_scale_reaches_decisions_and_evaluations(toy_policy, tmp_path, monkeypatch, scale):
    seen_eval = []
    real_eval = finetune.evaluate
    monkeypatch.setattr(finetune, "evaluate", lambda *a, **kw: seen_eval.append(kw["noise_scale"]) or real_eval(*a, **kw))
    t = Finetuner(_cfg(toy_policy, tmp_path / "r", steps=60, method="action-residual", sampler_noise_scale=scale),
                  progress=False)
    noises = []
    chunk = t.adapter.chunk
    monkeypatch.setattr(t.adapter, "chunk", lambda obs, feats, act, noise: noises.append(noise) or chunk(obs, feats, act, noise))
    t.run()
    assert noises and seen_eval and set(seen_eval) == {scale}
    largest = max(float(n.abs().max()) for n in noises)
    assert (largest == 0.0) if scale == 0.0 else (largest > 0.5)


def test_negative_or_nan_scale_is_refused(toy_policy, tmp_path):
    for bad in (-1.0, float("nan")):
        with pytest.raises(UserError, match="sampler_noise_scale"):
            _cfg(toy_policy, tmp_path / "r", sampler_noise_scale=bad)


def test_run_recorded_before_the_field_existed_resumes_at_its_default(toy_policy, tmp_path):
    out = tmp_path / "r"
    part = Finetuner(_cfg(toy_policy, out, steps=100), progress=False)
    part.run()
    record = json.loads((out / "config.json").read_text())
    del record["finetune"]["sampler_noise_scale"]  # what an older steerlab wrote
    (out / "config.json").write_text(json.dumps(record))
    Finetuner(_cfg(toy_policy, out, steps=200), progress=False).run()  # same default: continues
    with pytest.raises(UserError, match="sampler_noise_scale"):
        Finetuner(_cfg(toy_policy, out, steps=300, sampler_noise_scale=0.0), progress=False).run()
