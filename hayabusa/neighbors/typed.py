"""Neighbours grouped by type in fixed sections: the fixed shapes a model reads.

A model such as DeepPot-SE runs one embedding net per neighbour type; it needs, for every
atom, the neighbours of each type within its cutoff in a section of fixed width (DeePMD's
``sel``). ``group_by_type`` makes that layout from any padded full neighbour matrix with no
host synchronisation: type t's neighbours within the cutoff fill columns
``offset_t … offset_t + sel_t − 1`` in slot order, −1 marks an empty column. The widths belong
to the neighbor list (``VerletList.typed``), which sizes them from the structure, flags on the
device when an atom had more neighbours of a type than its section holds, and grows them at
its next build (outside any CUDA graph).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TypedRequest:
    """Neighbours within ``cutoff`` (length) grouped by type; ``species`` the atomic numbers
    in type order (a model's own order, which need not be the state's)."""

    cutoff: float
    species: tuple[int, ...]

    @property
    def n_types(self) -> int:
        return len(self.species)

    def types_of(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        """[N] int64 type of each atom in this order (−1: not among ``species``)."""
        lookup = torch.full((119,), -1, dtype=torch.int64, device=atomic_numbers.device)
        lookup[list(self.species)] = torch.arange(self.n_types, device=atomic_numbers.device)
        return lookup[atomic_numbers]


@dataclass
class TypedNeighbors:
    """One evaluation's grouped neighbours (see the module docstring).

    ``index`` [N, Σsel] int64 atom ids (−1: empty); ``shifts`` [N, Σsel, 3] image shifts in
    cell rows (r_j + shift·cell − r_i is the pair vector; zero where empty); ``sel`` the
    section widths; ``types`` [N] int64 each atom's type in the request's order;
    ``centers`` per type the atoms of that type [n_t] int64."""

    index: torch.Tensor
    shifts: torch.Tensor
    sel: tuple[int, ...]
    types: torch.Tensor
    centers: list[torch.Tensor]


def section_width(most: int, headroom: bool = True) -> int:
    """A section for at most ``most`` neighbours: with ``headroom`` (atoms that move) 1/16
    more (at least 2), rounded up to even — the neighbours within a cutoff of one atom vary
    little in MD; without (fixed frames, as in training) ``most`` itself, at least 1."""
    if not headroom:
        return max(most, 1)
    width = most + max(2, math.ceil(most / 16))
    return width + width % 2


def type_counts(within: torch.Tensor, neighbor_types: torch.Tensor,
                n_types: int) -> torch.Tensor:
    """[N, T] int64: each atom's slots within the cutoff (``within`` [N, K]) per neighbour
    type (``neighbor_types`` [N, K])."""
    key = torch.where(within & (neighbor_types >= 0), neighbor_types, n_types)
    counts = torch.zeros(within.shape[0], n_types + 1, dtype=torch.int64, device=key.device)
    return counts.scatter_add_(1, key, torch.ones_like(key))[:, :n_types]


def group_by_type(index: torch.Tensor, shifts: torch.Tensor, within: torch.Tensor,
                  neighbor_types: torch.Tensor, sel: list[int]):
    """(typed index [N, Σsel], typed shifts [N, Σsel, 3], counts [N, T]) from a padded full
    matrix ``index`` [N, K], ``shifts`` [N, K, 3], the slots to keep ``within`` [N, K] and the
    neighbours' types [N, K]. Neighbours beyond a section's width are dropped; ``counts``
    (per type, before dropping) tells whether any were. Pure tensor code, no host sync
    (TorchScript-compatible: exported models call it too)."""
    n = index.shape[0]
    n_types = len(sel)
    total = 0
    for width in sel:
        total += width
    keep = within & (neighbor_types >= 0)
    key = torch.where(keep, neighbor_types, torch.full_like(neighbor_types, n_types))
    column = torch.full_like(key, total)  # where each slot goes; ``total``: a spill column
    counts = torch.zeros(n, n_types, dtype=torch.int64, device=index.device)
    offset = 0
    for t in range(n_types):
        match = key == t
        rank = torch.cumsum(match.to(torch.int64), 1)  # 1 + earlier slots of type t
        fits = match & (rank <= sel[t])
        column = torch.where(fits, offset + rank - 1, column)
        counts[:, t] = match.sum(1)
        offset += sel[t]
    typed_index = torch.full((n, total + 1), -1, dtype=index.dtype, device=index.device)
    typed_index.scatter_(1, column, index)
    typed_shifts = torch.zeros(n, total + 1, 3, dtype=shifts.dtype, device=shifts.device)
    typed_shifts.scatter_(1, column.unsqueeze(-1).expand(-1, -1, 3), shifts)
    return typed_index[:, :total], typed_shifts[:, :total], counts


class TypedSections:
    """One ``TypedRequest`` on a neighbor list: the atoms' ``types`` [N] in its order,
    ``centers`` (per type its atoms [n_t], one host sync to make), the section widths ``sel``
    (host ints) and, on the device, ``limit`` [T] and ``seen`` [T] — the most neighbours of
    each type within the cutoff one atom had since the widths were set."""

    def __init__(self, request: TypedRequest, sel, types: torch.Tensor):
        self.request = request
        self.sel = tuple(int(w) for w in sel)
        self.types = types
        self.centers = [torch.nonzero(types == t).flatten() for t in range(request.n_types)]
        self.limit = torch.tensor(self.sel, dtype=torch.int64, device=types.device)
        self.seen = torch.zeros_like(self.limit)

    def record(self, counts: torch.Tensor) -> None:
        """Fold one evaluation's counts [N, T] into ``seen`` (in place, on the device)."""
        if counts.numel():
            torch.maximum(self.seen, counts.amax(0), out=self.seen)

    def overflowed(self) -> torch.Tensor:
        """[] bool: an atom had more neighbours of a type than its section holds."""
        return (self.seen > self.limit).any()

    def grown(self, counts: torch.Tensor, headroom: bool = True) -> list[int]:
        """Widths that hold the counts [N, T] now and everything seen (host sync): a section
        that is outgrown gets ``section_width(its most, headroom)``; the others stay."""
        most = self.seen.clone()
        if counts.numel():
            most = torch.maximum(most, counts.amax(0))
        return [section_width(m, headroom) if m > w else w
                for w, m in zip(self.sel, most.tolist(), strict=True)]
