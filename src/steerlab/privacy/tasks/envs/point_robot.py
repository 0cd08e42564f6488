"""The PRoP paper's linear point robot: state [p, g] in [−1, 1]^(2·dim), expert action a = goal − p.

General behaviour: go to the observed goal g. User u's preference: go to g_u = A_u·g + c_u, an affine map
of g (A_u: a rotation by 2πu/8 in the first two axes composed with a mirror of the first axis; c_u: an
offset of 0.3 in direction 2πu/8 + π/8), so every user of a multi-user model wants something different.
The personal goal is never part of the state.
"""

from __future__ import annotations

import math

import torch


def user_goal_maps(dim: int, n_users: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(A_u, c_u) for users 0..n_users−1."""
    maps = []
    for u in range(n_users):
        th = 2 * math.pi * u / 8
        rot = torch.eye(dim)
        rot[:2, :2] = torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        mirror = torch.eye(dim)
        mirror[0, 0] = -1.0
        c = torch.zeros(dim)
        c[:2] = 0.3 * torch.tensor([math.cos(th + math.pi / 8), math.sin(th + math.pi / 8)])
        maps.append((rot @ mirror, c))
    return maps


def sample_states(n: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    """Uniform states [p, g] in [−1, 1]^(2·dim)."""
    return torch.rand(n, 2 * dim, generator=gen) * 2 - 1


def expert_actions(x: torch.Tensor, dim: int, goal_map: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """a = goal − p, with the goal mapped by (A, c) for a user's preference (None: the general goal)."""
    p, g = x[:, :dim], x[:, dim:]
    if goal_map is not None:
        a, c = goal_map
        g = g @ a.T + c
    return g - p
