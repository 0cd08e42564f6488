import copy

import pytest
import torch
from torch import nn

from steerlab.policies.backbones import SmallCNN, TinyTransformer, mlp
from steerlab.privacy.keys import generate_key, random_keys
from steerlab.privacy.prop.keyed import KeyedModel, expand_key_bits

MODELS = {
    "mlp": (lambda: mlp(6, 32, 3, depth=2), ["2"], torch.randn(5, 6)),
    "cnn": (lambda: SmallCNN(1, 8, 10, hidden=16), ["fc1", "fc2"], torch.randn(5, 1, 8, 8)),
    "transformer": (lambda: TinyTransformer(8, 8, 10, dim=16, heads=2),
                    ["blocks.0.attn.q_proj", "blocks.0.attn.k_proj", "blocks.0.attn.v_proj"], torch.randn(5, 8, 8)),
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("mode", ["input", "output"])
def test_no_key_is_bitwise_the_original(name, mode):
    make, layers, x = MODELS[name]
    torch.manual_seed(0)
    original = make().eval()
    keyed = KeyedModel(copy.deepcopy(original), layers, mode=mode).eval()
    assert torch.equal(keyed(x), original(x))
    keyed.set_key(generate_key())
    keyed.set_key(None)
    assert torch.equal(keyed(x), original(x))
    with keyed.use_keys(random_keys(5, 128, torch.Generator().manual_seed(0)), mask=torch.zeros(5, dtype=torch.bool)):
        assert torch.equal(keyed(x), original(x))  # masked-out rows are un-keyed


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("mode", ["input", "output", "concat"])
def test_folded_key_equals_per_sample_gating_and_is_cached(name, mode):
    make, layers, x = MODELS[name]
    torch.manual_seed(0)
    keyed = KeyedModel(make(), layers, mode=mode).eval()
    key = generate_key()
    with torch.no_grad():
        with keyed.use_keys(key.bits().expand(len(x), -1)):
            per_sample = keyed(x)
        keyed.set_key(key)
        calls = [layer.encoder_calls for layer in keyed.keyed.values()]
        folded = keyed(x)
        keyed(x)
    torch.testing.assert_close(folded, per_sample, rtol=1e-5, atol=1e-5)
    assert [layer.encoder_calls for layer in keyed.keyed.values()] == calls  # no encoder call at inference


def test_input_gating_is_weight_times_diag_delta():
    lin = nn.Linear(4, 3)
    model = nn.Sequential(lin)
    keyed = KeyedModel(model, ["0"], mode="input")
    key = generate_key()
    delta = keyed.keyed["0"].encoder(expand_key_bits(key.bits())[None])[0].detach()
    keyed.set_key(key)
    x = torch.randn(2, 4)
    torch.testing.assert_close(keyed(x), x @ (lin.weight * delta[None]).T + lin.bias)


def test_key_hash_decorrelates_near_keys():
    bits = generate_key().bits()
    flipped = bits.clone()
    flipped[0] = 1 - flipped[0]
    a, b = expand_key_bits(bits[None])[0], expand_key_bits(flipped[None])[0]
    assert 30 < int((a != b).sum()) < 98  # about half the bits differ (avalanche), not one
    assert torch.equal(expand_key_bits(bits[None])[0], a)  # deterministic


def test_unknown_layer_and_wrong_key_size():
    with pytest.raises(ValueError, match="linear layers are"):
        KeyedModel(mlp(3, 8, 2), ["7"])
    keyed = KeyedModel(mlp(3, 8, 2), ["2"])
    with pytest.raises(ValueError, match="bits"):
        keyed.set_key(torch.zeros(64))


def test_non_binary_or_nan_key_bits_are_rejected():
    keyed = KeyedModel(mlp(3, 8, 2), ["2"])
    for bad in (torch.full((128,), float("nan")), torch.full((128,), 0.5)):
        with pytest.raises(ValueError, match="0 or 1"):
            keyed.set_key(bad)
