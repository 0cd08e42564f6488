"""The personalization methods, by name: one table for `steerlab personalize` and `steerlab.bench.privacy`.

Each method turns (task, public base, user keys, budget) into a `Personalized` (steerlab.privacy.key_cases):
a uniform view that runs the result under any key. Methods are registered with `@method(name)`;
adding one is one function here (or in its own module) and its registration.

| method        | what is trained                                   | released                              |
|---------------|---------------------------------------------------|---------------------------------------|
| prop          | key encoders + the model's weights (PRoP), wrong   | keyed model (+ public base)           |
|               | keys also held at the base on personal inputs      |                                       |
| prop_unanchored | PRoP's loss as published (v1): no anchor loss    | keyed model                           |
| prop_output   | prop_unanchored gating layer outputs               | keyed model                           |
| prop_rawbits  | prop_unanchored on raw key bits (no HKDF)          | keyed model                           |
| prop_frozen   | key encoders only (no-key model = the base)        | keyed model                           |
| key_mlp       | a key projection added to a linear layer           | keyed model                           |
| cvae          | encoder-based personalization                      | (comparison only)                     |
| finetune      | every weight, per user                             | (comparison only: not private)        |
| lora          | a rank-4 LoRA adapter per user, in the clear        | (comparison only)                     |
| sealed        | rank-8 LoRA deltas on every linear layer, per user | the base bit for bit + sealed blobs   |
| sealed_full   | every weight, per user (the fine-tune)             | the base bit for bit + sealed blobs   |

Budgets: `steps` counts gradient steps (environment steps for RL tasks). On RL tasks the keyed methods get
twice the steps: half of keyed PPO's episodes are general, so they see as many personal episodes as the
per-user methods.

The anchor (`KeyedTrainConfig.anchor_weight`): PRoP's published loss holds wrong keys at the base only on
the *general* data. Where the personal data visits inputs the general data never covers (a user's own
demonstrations of another goal), the wrong-key model is free to blend in the personal behaviour there:
on Meta-World reach, no-key rollouts drifted toward the personal goal by +0.072 ± 0.020 success over the
base (12 seeds), −0.003 ± 0.016 with the anchor, at the same correct-key score
(benchmarks/results/privacy_drift.json). So `prop` anchors; `prop_unanchored` keeps v1's loss. The
ablations `prop_output`, `prop_rawbits`, `prop_frozen` and the key-MLP baseline were measured against
v1's loss and stay unanchored: compare them with `prop_unanchored`. (RL tasks learn by PPO, whose
auxiliary general loss already covers the personal states: the anchor does not apply there.)
For your own policy (`Task.base_given`: the base is given, not trained on the general data here) `prop` also
labels the general rows with the base's outputs instead of the demonstrations': re-fitting the demonstrations
moved the no-key path off a short-trained Pendulum base by +163 and +196 return on the same episodes while the
held-out no-key score looked better than the base's; with the base's labels +30 and +61 (2 seeds; a converged
base: within ±0.3 before and after; benchmarks/results/personalize_own.json, docs/privacy.md). Only `sealed`
runs the base bit for bit without the key.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from steerlab.core.errors import UserError
from steerlab.core.registry import Registry
from steerlab.privacy.key_cases import Personalized
from steerlab.privacy.keys import UserKey, check_distinct
from steerlab.privacy.prop.training import KeyedTrainConfig

METHODS = Registry("personalization method", group="steerlab.personalization_methods")
"""name -> builder(name, task, base, users, PersonalizeConfig) -> Personalized."""
# method -> (gate mode, anchored)
KEYED = {"prop": ("input", True), "prop_unanchored": ("input", False), "prop_output": ("output", False),
         "prop_rawbits": ("input", False), "prop_frozen": ("input", False), "key_mlp": ("concat", False)}
ANCHOR_WEIGHT = 1.0  # the anchor loss's weight next to the personal and general losses (each weight 1)
RELEASABLE = ("prop", "prop_unanchored", "prop_output", "prop_rawbits", "prop_frozen", "key_mlp", "sealed",
              "sealed_full")


@dataclass
class PersonalizeConfig:
    steps: int
    """Gradient steps (environment steps for RL tasks)."""
    seed: int = 0
    """Seeds training (batches, negative keys, initialisation): same seed, same model."""
    hardened: bool = False
    """Keyed methods: adversarial negatives + steep encoders (`--harden`)."""
    near_miss_bits: int = 4
    """ε: keys up to this many bits off a user's are trained as wrong keys (keyed methods)."""
    layers: list[str] | None = None
    """Keyed layers (keyed methods) or LoRA layers (sealed); None: the task's / every linear layer."""
    lr: float | None = None
    """None: the task's learning rate."""
    progress: bool = False
    """Show a tqdm bar while training."""
    base_config: dict | None = None
    """Sealed methods: the base's config as the release records it; its hash is bound into every blob
    (None: a base that lives in memory only, bound as such)."""
    personal: list[dict] | None = None
    """Sealed methods: each user's personal options (dataset path, goal offset, ...), sealed inside that
    user's blob instead of written in clear."""


def method(name: str):
    """Decorator: register a personalization method's builder under `name`."""
    return METHODS.register(name)


def train_config(task, m: PersonalizeConfig, steps: int, train_base: bool = True, anchor_weight: float = 0.0):
    """Anchored (anchor_weight > 0) on a task whose base is given (the user's own policy): the general rows are
    labelled by the base too (`KeyedTrainConfig.anchor_general`)."""
    return KeyedTrainConfig(steps=steps, lr=m.lr or task.lr, seed=m.seed, hardening=m.hardened,
                            near_miss_bits=m.near_miss_bits, train_base=train_base, anchor_weight=anchor_weight,
                            anchor_general=bool(anchor_weight) and task.base_given, progress=m.progress)


def build_personalized(name: str, task, base: torch.nn.Module, users: list[UserKey], m: PersonalizeConfig) -> Personalized:
    build = METHODS.lookup(name)
    if m.steps <= 0:
        raise UserError(f"--steps must be a positive count, got {m.steps}")
    check_distinct(users)  # two users, one key: the second user's part would be unreachable
    return build(name, task, base, users, m)


def _keyed(name, task, base, users, m):
    from steerlab.privacy.prop.keyed import KeyedModel
    from steerlab.privacy.prop.training import train_keyed

    steps = m.steps * (2 if task.rl else 1)
    layers = m.layers or ([task.concat_layer] if name == "key_mlp" else task.layers)
    mode, anchored = KEYED[name]
    model = KeyedModel(copy.deepcopy(base), layers, users[0].n_bits, mode=mode,
                       key_hash=name not in ("key_mlp", "prop_rawbits"), sharpness=8.0 if m.hardened else 1.0)
    if m.hardened and name == "prop_frozen":
        raise UserError("--harden needs the base's weights trained too (it teaches the network to ignore gates)")
    cfg = train_config(task, m, steps, train_base=name != "prop_frozen",
                       anchor_weight=ANCHOR_WEIGHT if anchored else 0.0)
    log = train_keyed(model, task, users, cfg)
    p = Personalized("key_mlp" if name == "key_mlp" else "prop", model, [u.bits() for u in users],
                     predict=task.predict)
    p.log = log
    return p


for _name in KEYED:
    method(_name)(_keyed)


@method("cvae")
def _cvae(name, task, base, users, m):
    from steerlab.privacy.prop.baselines import train_cvae

    if task.cvae_layer is None:
        raise UserError(f"the CVAE baseline is not defined for {task.name} (it is a supervised encoder model)")
    return Personalized("cvae", train_cvae(base, task, users, train_config(task, m, m.steps)),
                        [u.bits() for u in users], predict=task.predict)


@method("finetune")
def _finetune(name, task, base, users, m):
    from steerlab.privacy.prop.baselines import train_finetune

    if len(users) != 1:
        raise UserError("finetune is one model per user: pass one key")
    return Personalized("finetune", train_finetune(base, task, 0, train_config(task, m, m.steps)),
                        [u.bits() for u in users], predict=task.predict)


@method("lora")
def _lora(name, task, base, users, m):
    from steerlab.privacy.prop.baselines import train_lora

    if len(users) != 1:
        raise UserError("the lora baseline is one adapter per user: pass one key")
    model, adapters = train_lora(base, task, 0, train_config(task, m, m.steps))
    return Personalized("lora", model, [u.bits() for u in users], adapters, predict=task.predict)


def _sealed(name, task, base, users, m):
    from steerlab.privacy.sealed.adapters import AdapterConfig, train_adapter
    from steerlab.privacy.sealed.blobs import Binding, SealedRelease, config_sha256, pack, seal, state_sha256

    if m.personal is not None and len(m.personal) != len(users):
        raise UserError(f"{len(m.personal)} users' personal options for {len(users)} keys")
    adapter = AdapterConfig(kind="full" if name == "sealed_full" else "lora", layers=m.layers)
    binding = Binding.new(state_sha256(base.state_dict()), config_sha256(m.base_config), len(users))
    blobs = []
    for u, key in enumerate(users):
        tensors, meta = train_adapter(base, task, u, train_config(task, m, m.steps), adapter)
        payload = pack({"adapter": (tensors, meta)}, (m.personal or [{}] * len(users))[u])
        blobs.append(seal(payload, key, binding, slot=u))
    return Personalized("sealed", SealedRelease(base, blobs, binding), [u.bits() for u in users],
                        predict=task.predict)


for _name in ("sealed", "sealed_full"):
    method(_name)(_sealed)
