"""NeighborList: a padded full neighbor matrix with a Verlet skin.

The list holds every pair within ``cutoff + skin`` as a dense matrix ``neighbors`` [N, K]
(padded with the atom's own index, ``mask`` False there) and integer image shifts
``shifts`` [N, K, 3]. Between builds only positions change, so potentials gather from the
matrix without any host synchronisation. The rebuild policy, capacity growth and the
grouped-by-type view are ``VerletList``'s. ``cutoff`` may differ per system (a sequence, one
per system of the batch): each system's pairs are searched within its own cutoff + skin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import InputError
from .pairs import Pairs, brute_force_pairs, cell_list_pairs
from .verlet import VerletList, gather_rows

BACKENDS = ("cell", "brute", "vesin")  # see md.forces.make_neighbor_list for "auto"


class NeighborList(VerletList):
    kind = "matrix"
    buffer_names = ("neighbors", "shifts", "mask")  # [N, K] int64; [N, K, 3] float; [N, K] bool

    def __init__(self, cutoff: float | Sequence[float], skin: float = 0.0,
                 backend: str = "cell", capacity: int = 0, growth: float = 1.25,
                 check_every: int = 1):
        if backend not in BACKENDS:
            raise InputError(f"neighbor list: unknown backend {backend!r}; expected one of "
                             f"{list(BACKENDS)}")
        per_system = None
        if isinstance(cutoff, Sequence):
            per_system = [float(c) for c in cutoff]
            if not per_system or min(per_system) <= 0:
                raise InputError(f"neighbor list: cutoffs must be > 0, got {cutoff}")
            if backend == "vesin":
                raise InputError("neighbor list: per-system cutoffs need backend cell or brute")
            cutoff = max(per_system)
        super().__init__(cutoff, skin, capacity, growth, check_every)
        self.backend = backend
        self.system_cutoffs = per_system

    # ------------------------------------------------------------------ build
    def _search_cutoff(self, state):
        """The list cutoff: a float, or [S] per system."""
        if self.system_cutoffs is None:
            return self.list_cutoff
        if len(self.system_cutoffs) != state.n_systems:
            raise InputError(f"neighbor list: {len(self.system_cutoffs)} cutoffs given for a "
                             f"batch of {state.n_systems} systems")
        return torch.tensor(self.system_cutoffs, dtype=state.dtype,
                            device=state.device) + self.skin

    def search(self, state) -> Pairs:
        """Full pair list within the list cutoff by the chosen backend."""
        args = (state.positions, state.cell, state.pbc, state.system_idx,
                self._search_cutoff(state))
        if self.backend == "cell":
            return cell_list_pairs(*args)
        if self.backend == "brute":
            return brute_force_pairs(*args)
        from .vesin_backend import vesin_pairs
        return vesin_pairs(*args)

    def _build(self, state) -> None:
        pairs = self.search(state)
        n = state.n_atoms
        counts = torch.bincount(pairs.i, minlength=n)
        max_count = int(counts.max()) if n else 0
        if max_count > self.capacity:
            self.capacity = max(8, 8 * math.ceil(max_count * self.growth / 8))
        self._fill(pairs, counts, n, state.positions.dtype)

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

    def slots(self, state):
        return self.neighbors, self.shifts, self.mask, self.pair_vectors(state)

    def half_mask(self) -> torch.Tensor:
        """[N, K] bool selecting each pair once: j > i, or j == i with a positive shift."""
        i = torch.arange(self.neighbors.shape[0], device=self.neighbors.device)[:, None]
        j = self.neighbors
        s = self.shifts
        positive = (s[..., 0] > 0) | ((s[..., 0] == 0) & ((s[..., 1] > 0)
                                                          | ((s[..., 1] == 0) & (s[..., 2] > 0))))
        return self.mask & ((j > i) | ((j == i) & positive))

    def edges(self, half: bool = False) -> Edges:
        """Fixed-shape edge view [N·K] of the current list (no host sync): every slot with a
        mask saying which are pairs (each pair once with ``half``)."""
        mask = self.half_mask() if half else self.mask
        n, k = self.neighbors.shape
        i = torch.arange(n, device=mask.device).repeat_interleave(k)
        return Edges(i, self.neighbors.reshape(-1), self.shifts.reshape(-1, 3),
                     mask.reshape(-1))


@dataclass
class Edges:
    """Padded edges: ``i``, ``j`` [E] int64, ``shift`` [E, 3] (cell rows), ``mask`` [E]."""

    i: torch.Tensor
    j: torch.Tensor
    shift: torch.Tensor
    mask: torch.Tensor

    def compact(self) -> Pairs:
        """The pairs alone (host sync: not for the step path)."""
        keep = torch.nonzero(self.mask).flatten()
        return Pairs(self.i[keep], self.j[keep], self.shift[keep].round().to(torch.int64))
