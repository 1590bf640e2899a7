"""Sums of potentials sharing one neighbor list (built for the largest cutoff)."""

from __future__ import annotations

import torch

from .base import Potential, PotentialResult


class SumPotential(Potential):
    def __init__(self, *terms: Potential):
        super().__init__()
        self.terms = torch.nn.ModuleList(terms)
        self.cutoff = max(t.cutoff for t in terms)
        self.core_radius = max(t.core_radius for t in terms)

    def check_state(self, state) -> None:
        for t in self.terms:
            t.check_state(state)

    def neighbor_requests(self):
        return tuple(dict.fromkeys(r for t in self.terms for r in t.neighbor_requests()))

    def forward(self, state, neighbors, compute_stress: bool = False) -> PotentialResult:
        results = [t(state, neighbors, compute_stress) for t in self.terms]

        def total(name):
            parts = [getattr(r, name) for r in results]
            return None if any(p is None for p in parts) else sum(parts)

        return PotentialResult(energy=total("energy"), forces=total("forces"),
                               stress=total("stress"), atom_energy=total("atom_energy"))
