"""ForceEvaluator: a potential together with the neighbor list that keeps it valid."""

from __future__ import annotations

from ..neighbors import NeighborList
from ..potentials import Potential, PotentialResult


class ForceEvaluator:
    """Evaluates ``potential`` on a state, rebuilding the neighbor list when needed.

    The list is checked every ``check_every`` calls (LAMMPS ``neigh_modify every``); each check
    is one host sync. With ``check_every`` > 1 a check that finds an atom already beyond
    skin/2 counts as a *dangerous build*: pairs may have been missed since the last check.
    """

    def __init__(self, potential: Potential, skin: float = 0.0, backend: str = "cell",
                 check_every: int = 1):
        self.potential = potential
        self.neighbors = (NeighborList(potential.cutoff, skin, backend)
                          if potential.cutoff > 0 else None)
        self.check_every = max(1, int(check_every))
        self.calls = 0
        self.dangerous_builds = 0

    def __call__(self, state, compute_stress: bool = False, update: bool = True
                 ) -> PotentialResult:
        """Energy and forces (and stress); ``update=False`` reuses the list as it is."""
        nl = self.neighbors
        if not update:
            return self.potential(state, nl, compute_stress)
        if nl is not None and (nl.neighbors is None or self.calls % self.check_every == 0):
            first = nl.neighbors is None
            if nl.update(state) and not first and self.check_every > 1:
                self.dangerous_builds += 1
        self.calls += 1
        return self.potential(state, nl, compute_stress)
