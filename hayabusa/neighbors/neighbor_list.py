"""NeighborList: a padded full neighbor matrix with a Verlet skin.

The list holds every pair within ``cutoff + skin`` as a dense matrix ``neighbors`` [N, K]
(padded with the atom's own index, ``mask`` False there) and integer image shifts
``shifts`` [N, K, 3]. Between builds only positions change, so potentials gather from the
matrix without any host synchronisation. ``needs_rebuild`` is evaluated on the device (an atom
moved more than skin/2 since the build, or the buffer overflowed); ``update`` reads it — the
one host sync — and rebuilds. On overflow the capacity K grows and the list is built again:
pairs are never dropped silently.
"""

from __future__ import annotations

import math

import torch

from ..errors import InputError
from .pairs import Pairs, brute_force_pairs, cell_list_pairs
from .verlet import VerletList, gather_rows

BACKENDS = ("cell", "brute", "vesin")  # see md.forces.make_neighbor_list for "auto"


class NeighborList(VerletList):
    kind = "matrix"
    buffer_names = ("neighbors", "shifts", "mask")  # [N, K] int64; [N, K, 3] float; [N, K] bool

    def __init__(self, cutoff: float, skin: float = 0.0, backend: str = "cell",
                 capacity: int = 0, growth: float = 1.25):
        if backend not in BACKENDS:
            raise InputError(f"neighbor list: unknown backend {backend!r}; expected one of "
                             f"{list(BACKENDS)}")
        super().__init__(cutoff, skin, capacity, growth)
        self.backend = backend

    # ------------------------------------------------------------------ build
    def search(self, state) -> Pairs:
        """Full pair list within ``cutoff + skin`` by the chosen backend."""
        args = (state.positions, state.cell, state.pbc, state.system_idx, self.list_cutoff)
        if self.backend == "cell":
            return cell_list_pairs(*args)
        if self.backend == "brute":
            return brute_force_pairs(*args)
        from .vesin_backend import vesin_pairs
        return vesin_pairs(*args)

    def build(self, state) -> NeighborList:
        """Build from scratch; grows the capacity until every pair fits."""
        pairs = self.search(state)
        n = state.n_atoms
        counts = torch.bincount(pairs.i, minlength=n)
        max_count = int(counts.max()) if n else 0
        if max_count > self.capacity:
            self.capacity = max(8, 8 * math.ceil(max_count * self.growth / 8))
        self._fill(pairs, counts, n, state.positions.dtype)
        if self.reference_positions is not None and \
                self.reference_positions.shape == state.positions.shape:
            self.reference_positions.copy_(state.positions)
        else:
            self.reference_positions = state.positions.detach().clone()
        self.n_builds += 1
        return self

    def _fill(self, pairs: Pairs, counts, n: int, dtype) -> None:
        """Write the pairs into the [N, K] buffers, in place when their shape is unchanged
        (a captured CUDA graph keeps reading the same memory)."""
        device = pairs.i.device
        k = self.capacity
        start = torch.cumsum(counts, 0) - counts
        slot = torch.arange(pairs.i.numel(), device=device) - start[pairs.i]
        fits = slot < k
        i, j, slot, shift = pairs.i[fits], pairs.j[fits], slot[fits], pairs.shift[fits]
        neighbors = torch.arange(n, device=device)[:, None].repeat(1, k)
        neighbors[i, slot] = j
        shifts = torch.zeros(n, k, 3, dtype=dtype, device=device)
        shifts[i, slot] = shift.to(dtype)
        mask = torch.zeros(n, k, dtype=torch.bool, device=device)
        mask[i, slot] = True
        overflow = ~fits.all()
        if self.neighbors is not None and self.neighbors.shape == neighbors.shape \
                and self.shifts.dtype == dtype and self.neighbors.device == device:
            self.neighbors.copy_(neighbors)
            self.shifts.copy_(shifts)
            self.mask.copy_(mask)
            self.overflow.copy_(overflow)
        else:
            self.neighbors, self.shifts, self.mask, self.overflow = \
                neighbors, shifts, mask, overflow

    # ------------------------------------------------------------------ views
    def pair_vectors(self, state) -> torch.Tensor:
        """[N, K, 3] r_j + shift @ cell − r_i for every slot (padding slots give zeros)."""
        pos = state.positions
        shift = torch.einsum("nki,nij->nkj", self.shifts, state.cell[state.system_idx])
        return gather_rows(pos, self.neighbors) + shift - pos[:, None, :]

    def half_mask(self) -> torch.Tensor:
        """[N, K] bool selecting each pair once: j > i, or j == i with a positive shift."""
        i = torch.arange(self.neighbors.shape[0], device=self.neighbors.device)[:, None]
        j = self.neighbors
        s = self.shifts
        positive = (s[..., 0] > 0) | ((s[..., 0] == 0) & ((s[..., 1] > 0)
                                                          | ((s[..., 1] == 0) & (s[..., 2] > 0))))
        return self.mask & ((j > i) | ((j == i) & positive))

    def edges(self, half: bool = False) -> Pairs:
        """Edge-list view (i, j, integer shift) of the current list; syncs with the host."""
        mask = self.half_mask() if half else self.mask
        i, slot = torch.nonzero(mask, as_tuple=True)
        return Pairs(i, self.neighbors[i, slot], self.shifts[i, slot].round().to(torch.int64))
