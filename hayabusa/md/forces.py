"""ForceEvaluator: a potential together with the neighbor list that keeps it valid."""

from __future__ import annotations

from ..neighbors import NeighborList
from ..neighbors.min_image import MinImageNeighborList, min_image_supported
from ..potentials import Potential, PotentialResult


def make_neighbor_list(potential: Potential, skin: float, backend: str, state=None,
                       check_every: int = 1):
    """The neighbor list for ``potential`` (serving its grouped-by-type requests): None when
    it needs none.

    ``backend`` "auto" takes the min-image list (read by fused GPU kernels) on a CUDA device
    when every system allows it, else the cell list; "min_image", "cell", "brute" and "vesin"
    force one. ``check_every``: calls between checks of an eager list (``VerletList.update``).
    """
    if potential.cutoff <= 0:
        return None
    if backend == "auto":
        fits = state is not None and state.device.type == "cuda" and \
            min_image_supported(state, potential.cutoff + skin)
        backend = "min_image" if fits else "cell"
    if backend == "min_image":
        nl = MinImageNeighborList(potential.cutoff, skin, check_every=check_every)
    else:
        nl = NeighborList(potential.cutoff, skin, backend, check_every=check_every)
    for request in potential.neighbor_requests():
        nl.request(request)
    return nl


class ForceEvaluator:
    """Evaluates ``potential`` on a state with a neighbor list it keeps valid (see
    ``make_neighbor_list`` for the arguments)."""

    def __init__(self, potential: Potential, skin: float = 0.0, backend: str = "auto",
                 check_every: int = 1, state=None):
        self.potential = potential
        self.neighbors = make_neighbor_list(potential, skin, backend, state, check_every)

    def __call__(self, state, compute_stress: bool = False, update: bool = True
                 ) -> PotentialResult:
        """Energy and forces (and stress). ``update``: let the list rebuild when it must, and
        evaluate again after a type section turned out too small (a host sync); False (within
        a block of steps) uses the list as it is."""
        nl = self.neighbors
        if nl is None or not update:
            return self.potential(state, nl, compute_stress)
        nl.update(state)
        result = self.potential(state, nl, compute_stress)
        if nl.requests and bool(nl.overflowed()):
            nl.build(state)  # grows the sections that overflowed
            result = self.potential(state, nl, compute_stress)
        return result
