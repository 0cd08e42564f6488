import copy
import json

import torch

from steerlab.cli import main
from steerlab.privacy.key_cases import Personalized, evaluate_key_cases, user_study_indicators
from steerlab.privacy.keys import UserKey, generate_key
from steerlab.privacy.prop.baselines import train_cvae, train_finetune, train_lora
from steerlab.privacy.prop.keyed import KeyedModel
from steerlab.privacy.prop.training import KeyedTrainConfig, train_keyed
from steerlab.privacy.tasks.registry import PointRobotTask


def _trained(steps=400, **kw):
    task = PointRobotTask(hidden=64)
    base = task.train_base(0, steps=400)
    user = UserKey(bytes(range(16)))
    model = KeyedModel(copy.deepcopy(base), task.layers, **kw)
    train_keyed(model, task, [user], KeyedTrainConfig(steps=steps, seed=0))
    return task, base, model, user


def test_keyed_training_separates_correct_from_wrong_keys():
    task, base, model, user = _trained()
    cases = evaluate_key_cases(Personalized("prop", model, [user.bits()]), task, seed=0)
    assert cases["correct"]["personal"] > 0.8
    for wrong in ("random", "near_miss_1", "no_key"):
        assert cases[wrong]["general"] > 0.9 and cases[wrong]["personal"] < 0.2
    assert user_study_indicators(cases) == {"score": 3.0, "leakage": 0.0}


def test_same_seed_same_keyed_model():
    _, _, a, _ = _trained(steps=50)
    _, _, b, _ = _trained(steps=50)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


def test_frozen_base_keeps_no_key_model_bitwise_the_base():
    task = PointRobotTask(hidden=32)
    base = task.train_base(0, steps=50)
    model = KeyedModel(copy.deepcopy(base), task.layers)
    train_keyed(model, task, [generate_key()], KeyedTrainConfig(steps=30, train_base=False))
    x, _ = task.test_general()
    assert torch.equal(model(x), base(x))


def test_baselines_train_and_evaluate():
    task = PointRobotTask(hidden=32)
    base = task.train_base(0, steps=100)
    user = generate_key()
    cfg = KeyedTrainConfig(steps=30)
    lora_model, adapters = train_lora(base, task, 0, cfg)
    for p in (Personalized("cvae", train_cvae(base, task, [user], cfg), [user.bits()]),
              Personalized("finetune", train_finetune(base, task, 0, cfg), [user.bits()]),
              Personalized("lora", lora_model, [user.bits()], adapters)):
        cases = evaluate_key_cases(p, task, seed=0, n_keys=2)
        assert set(cases) == {"correct", "random", "near_miss_1", "no_key"}
    # LoRA without its adapter is exactly the base
    x, _ = task.test_general()
    assert torch.equal(Personalized("lora", lora_model, [user.bits()], adapters).runner(None)(x), base(x))


def test_run_folder_never_contains_the_key(tmp_path):
    keyfile = tmp_path / "alice.key"
    assert main(["keygen", "--out", str(keyfile)]) == 0
    key_hex = json.loads(keyfile.read_text())["key_hex"]
    out = tmp_path / "run"
    assert main(["personalize", "--task", "point_robot", "--keys", str(keyfile), "--out", str(out),
                 "--steps", "20", "--method", "prop"]) == 0  # the attacks below take a keyed model
    report = tmp_path / "attack.json"  # the attacks' report (tests/privacy/test_attacks.py checks what it finds)
    assert main(["attack", str(out), "--key", str(keyfile), "--quick", "--out", str(report)]) == 0
    bits = "".join(str(int(b)) for b in UserKey(bytes.fromhex(key_hex)).bits())
    raw = bytes.fromhex(key_hex)
    for f in [*out.rglob("*"), *(tmp_path / "run.private").rglob("*"), report]:
        if f.is_file():
            data = f.read_bytes()
            assert key_hex.encode() not in data and bits.encode() not in data and raw not in data, f
