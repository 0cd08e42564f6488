"""Steering methods as plug-ins: one module per method, registered by name.

| method              | protocol level | actor output                 | applied as                                  |
|---------------------|----------------|------------------------------|---------------------------------------------|
| zprl                | latent         | Δz ∈ [-1,1]^latent_dim       | z + λ·Δz, decoded by the VIB, frozen generator |
| action-residual     | action         | r ∈ [-1,1]^(n_exec·A)        | base actions + scale·r (Policy-Decorator)   |
| dsrl                | noise          | w ∈ [-1,1]^(noise size)      | generator initial noise ε = magnitude·w     |
| dsrl-na             | noise          | w ∈ [-1,1]^(noise size)      | as dsrl; Q^W distilled from an action critic |
| embedding-residual  | embedding      | Δe ∈ [-1,1]^embed_dim        | e + λ_e·Δe, no bottleneck (ablation)        |
| zprl-noise          | latent         | [Δz, w] ∈ [-1,1]^(latent+noise) | z + λ·Δz decoded, integrated from ε = mag·w |

Adding a method: one module beside these with a `@register`-ed `SteeringMethod` subclass, and its name
in `BUILTIN` below (docs/steering.md walks through one).
"""

from __future__ import annotations

import importlib

from steerlab.rl.steering.base import (
    REGISTRY,
    MethodConfig,
    SteeringMethod,
    make_adapter,
    method_class,
    register,
)

# modules imported for their @register side effect, in the order `--method` lists them
BUILTIN = ("zprl", "action_residual", "dsrl", "dsrl_na", "embedding_residual", "zprl_noise")
for _module in BUILTIN:
    importlib.import_module(f"steerlab.rl.steering.{_module}")

METHODS = tuple(REGISTRY)

from steerlab.rl.steering.steered import SteeredPolicy, load_steered_policy, save_steered_policy  # noqa: E402

__all__ = ["METHODS", "REGISTRY", "MethodConfig", "SteeredPolicy", "SteeringMethod", "load_steered_policy",
           "make_adapter", "method_class", "register", "save_steered_policy"]
