"""Evolutionary search over binary encoder inputs: the expanded key is a bit vector, and the attacker can
feed any bit vector to the encoders (skipping HKDF). Fitness is the divergence from the base on public
inputs; each run keeps the best half, breeds it by uniform crossover and flips ~2 bits per child. Needs no
gradient, so it also works where hardening made the encoders' gradients vanish."""

from __future__ import annotations

import torch

from steerlab.privacy.attacks.core import Found, Target
from steerlab.privacy.attacks.registry import register


@register("evolution", "evolutionary search over binary encoder inputs")
def evolution(t: Target) -> Found:
    b = t.budget
    runs, pop, n = b.evo_runs, b.evo_population, t.model.key_bits
    gen = t.generator(7)
    population = torch.randint(0, 2, (runs, pop, n), generator=gen).float()
    keep = max(2, pop // 2)
    evaluations = 0
    for _ in range(b.evo_generations):
        fit = t.fitness(population.reshape(runs * pop, n)).reshape(runs, pop)
        evaluations += runs * pop
        order = fit.argsort(1, descending=True)
        elite = torch.gather(population, 1, order[:, :keep, None].expand(-1, -1, n))
        parents_a = torch.randint(0, keep, (runs, pop - keep), generator=gen)
        parents_b = torch.randint(0, keep, (runs, pop - keep), generator=gen)
        pa = torch.gather(elite, 1, parents_a[..., None].expand(-1, -1, n))
        pb = torch.gather(elite, 1, parents_b[..., None].expand(-1, -1, n))
        child = torch.where(torch.rand(pa.shape, generator=gen) < 0.5, pa, pb)
        flip = torch.rand(child.shape, generator=gen) < 2.0 / n
        population = torch.cat([elite, torch.where(flip, 1 - child, child)], 1)
    fit = t.fitness(population.reshape(runs * pop, n)).reshape(runs, pop)
    evaluations += runs * pop
    best = population[torch.arange(runs), fit.argmax(1)]
    with torch.no_grad():
        return Found(deltas=t.encoder_gates(best), evaluations=evaluations)
