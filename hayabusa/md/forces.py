"""ForceEvaluator: a potential together with the neighbor list that keeps it valid."""

from __future__ import annotations

from ..neighbors import NeighborList
from ..neighbors.min_image import MinImageNeighborList, min_image_supported
from ..potentials import Potential, PotentialResult


def make_neighbor_list(potential: Potential, skin: float, backend: str, state=None):
    """The neighbor list for ``potential``: None when it needs none.

    ``backend`` "auto" takes the min-image list (read by fused GPU kernels) on a CUDA device
    when every system allows it, else the cell list; "min_image", "cell", "brute" and "vesin"
    force one."""
    if potential.cutoff <= 0:
        return None
    if backend == "auto":
        fits = state is not None and state.device.type == "cuda" and \
            min_image_supported(state, potential.cutoff + skin)
        backend = "min_image" if fits else "cell"
    if backend == "min_image":
        return MinImageNeighborList(potential.cutoff, skin)
    return NeighborList(potential.cutoff, skin, backend)


class ForceEvaluator:
    """Evaluates ``potential`` on a state, rebuilding the neighbor list when needed.

    The list is checked every ``check_every`` calls (LAMMPS ``neigh_modify every``); each check
    is one host sync. With ``check_every`` > 1 a check that finds an atom already beyond
    skin/2 counts as a *dangerous build*: pairs may have been missed since the last check.
    """

    def __init__(self, potential: Potential, skin: float = 0.0, backend: str = "auto",
                 check_every: int = 1, state=None):
        self.potential = potential
        self.neighbors = make_neighbor_list(potential, skin, backend, state)
        self.check_every = max(1, int(check_every))
        self.calls = 0
        self.dangerous_builds = 0

    def __call__(self, state, compute_stress: bool = False, update: bool = True
                 ) -> PotentialResult:
        """Energy and forces (and stress); ``update=False`` reuses the list as it is."""
        nl = self.neighbors
        if not update:
            return self.potential(state, nl, compute_stress)
        first = nl is not None and nl.reference_positions is None
        if nl is not None and (first or self.calls % self.check_every == 0):
            if nl.update(state) and not first and self.check_every > 1:
                self.dangerous_builds += 1
        self.calls += 1
        return self.potential(state, nl, compute_stress)
