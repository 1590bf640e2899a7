"""Pair searches that return full pair lists (every pair in both directions).

A pair (i, j, shift) means atom j seen through the periodic image ``shift`` (integer multiples
of the cell rows): r_ij = r_j + shift @ cell - r_i, with |r_ij| < cutoff and (i, shift) != (j, 0).
Positions need not be wrapped; shifts refer to the positions as given. ``cutoff`` is a number
or a tensor [S] with one cutoff per system.

``cell_list_pairs`` is the production search (linear in N); ``brute_force_pairs`` checks every
pair over every needed image and is the reference in tests.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from .frame import BinningFrame, build_frame

# Candidate pairs are processed in chunks of at most this many to bound memory.
_CHUNK_CANDIDATES = 1 << 23


@dataclass
class Pairs:
    i: torch.Tensor  # [P] int64, sorted
    j: torch.Tensor  # [P] int64
    shift: torch.Tensor  # [P, 3] int64 image shifts


def _pair_vectors(positions, cell, system_idx, i, j, shift):
    return positions[j] - positions[i] + torch.einsum(
        "pi,pij->pj", shift.to(positions.dtype), cell[system_idx[i]])


def _per_system(cutoff, cell: torch.Tensor) -> torch.Tensor:
    """[S] cutoffs from a number or a per-system sequence/tensor."""
    c = torch.as_tensor(cutoff, dtype=cell.dtype, device=cell.device).flatten()
    return c.expand(cell.shape[0]) if c.numel() == 1 else c


def _keep_within_cutoff(positions, cell, system_idx, i, j, shift, cutoff) -> Pairs:
    vec = _pair_vectors(positions, cell, system_idx, i, j, shift)
    keep = (vec * vec).sum(-1) < cutoff[system_idx[i]] ** 2
    keep &= (i != j) | (shift != 0).any(-1)
    return Pairs(i[keep], j[keep], shift[keep])


def _concat(parts: list[Pairs], device) -> Pairs:
    if not parts:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return Pairs(empty, empty, torch.zeros(0, 3, dtype=torch.int64, device=device))
    return Pairs(torch.cat([p.i for p in parts]), torch.cat([p.j for p in parts]),
                 torch.cat([p.shift for p in parts]))


def brute_force_pairs(positions, cell, pbc, system_idx, cutoff) -> Pairs:
    """Every atom pair of each system over every periodic image that can be within cutoff."""
    cutoff = _per_system(cutoff, cell)
    frame = build_frame(positions, cell, pbc, system_idx)
    reach = torch.where(pbc, torch.ceil(cutoff[:, None] / frame.widths) + 1,
                        torch.zeros_like(frame.widths))
    parts = []
    for s in range(cell.shape[0]):
        atoms = torch.nonzero(system_idx == s).squeeze(1)
        r = [range(-int(reach[s, d]), int(reach[s, d]) + 1) for d in range(3)]
        images = torch.tensor(list(itertools.product(*r)), dtype=torch.int64,
                              device=positions.device)
        n, m = atoms.numel(), images.shape[0]
        i = atoms.repeat_interleave(n * m)
        j = atoms.repeat_interleave(m).repeat(n)
        # Images are counted from the wrapped positions, shifts from the given ones.
        shift = images.repeat(n * n, 1) - frame.image[j] + frame.image[i]
        parts.append(_keep_within_cutoff(positions, cell, system_idx, i, j, shift, cutoff))
    return _concat(parts, positions.device)


def _bin_counts(frame: BinningFrame, cutoff: torch.Tensor, n_atoms_per_system) -> torch.Tensor:
    """[S, 3] bins per direction: bins at least half the cutoff [S] wide (5×5×5 stencils
    examine fewer candidates than 3×3×3 stencils of cutoff-wide bins), at most ~2 per atom."""
    nbins = torch.clamp(torch.floor(2 * frame.widths / cutoff[:, None]), min=1).to(torch.int64)
    limit = 2 * n_atoms_per_system + 8
    too_many = nbins.prod(dim=1) > limit
    while bool(too_many.any()):  # sparse systems (a gas, a molecule in a big box)
        nbins = torch.where(too_many[:, None], torch.clamp(nbins // 2, min=1), nbins)
        too_many = nbins.prod(dim=1) > limit
    return nbins


def cell_list_pairs(positions, cell, pbc, system_idx, cutoff) -> Pairs:
    """Cell-list search for a batch of systems of any size, shape and periodicity.

    Atoms are binned in fractional coordinates of each system's frame; with bins of width w
    (measured between opposite faces) the neighbours of an atom lie in the bins within
    ``reach`` = ceil(cutoff / w) of its own. Along periodic directions the stencil wraps, so
    cells thinner than the cutoff yield several periodic images of the same neighbour.
    """
    device = positions.device
    n_sys = cell.shape[0]
    cutoff = _per_system(cutoff, cell)
    n_per = torch.bincount(system_idx, minlength=n_sys)
    frame = build_frame(positions, cell, pbc, system_idx)
    nbins = _bin_counts(frame, cutoff, n_per)  # [S, 3]
    bin_width = frame.widths / nbins
    reach = torch.ceil(cutoff[:, None] / bin_width).to(torch.int64)  # [S, 3]
    reach = torch.where(pbc, reach, torch.minimum(reach, nbins - 1))  # no wrap: stay inside

    # Global bin id of every atom, atoms sorted by it, start and count of each bin.
    nb_atom = nbins[system_idx]
    b = torch.minimum((frame.frac * nb_atom).to(torch.int64), nb_atom - 1)
    bins_per_sys = nbins.prod(dim=1)
    bin_offset = torch.cumsum(bins_per_sys, 0) - bins_per_sys
    def flat(bb, nb, sys):
        return bin_offset[sys] + (bb[..., 0] * nb[..., 1] + bb[..., 1]) * nb[..., 2] + bb[..., 2]
    gbin = flat(b, nb_atom, system_idx)
    order = torch.argsort(gbin, stable=True)
    total_bins = int(bins_per_sys.sum())
    bin_count = torch.bincount(gbin, minlength=total_bins)
    bin_start = torch.cumsum(bin_count, 0) - bin_count

    max_reach = reach.max(dim=0).values.tolist()
    offsets = torch.tensor(list(itertools.product(*[range(-r, r + 1) for r in max_reach])),
                           dtype=torch.int64, device=device)  # [O, 3]

    n_atoms = positions.shape[0]
    atom_image_cart = torch.einsum("ni,nij->nj", frame.image.to(cell.dtype), cell[system_idx])
    parts = []
    start = 0
    per_atom_estimate = max(1, int(offsets.shape[0] * (n_atoms / max(total_bins, 1) + 1)))
    chunk = max(1, _CHUNK_CANDIDATES // per_atom_estimate)
    while start < n_atoms:
        atoms = torch.arange(start, min(start + chunk, n_atoms), device=device)
        start += chunk
        sys = system_idx[atoms][:, None]  # [A, 1]
        nb = nbins[sys]  # [A, 1, 3]
        target = b[atoms][:, None, :] + offsets[None]  # [A, O, 3]
        valid = (offsets[None].abs() <= reach[sys]).all(-1)
        periodic = pbc[sys]  # [A, 1, 3]
        inside = (target >= 0) & (target < nb)
        valid &= (periodic | inside).all(-1)
        wrapped = torch.remainder(target, nb)
        image = torch.div(target - wrapped, nb, rounding_mode="floor")
        tbin = flat(wrapped, nb.expand_as(wrapped), sys.expand(-1, offsets.shape[0]))
        tbin = torch.where(valid, tbin, torch.zeros_like(tbin))
        counts = torch.where(valid, bin_count[tbin], torch.zeros_like(tbin)).flatten()
        total = int(counts.sum())
        if total == 0:
            continue
        slot = torch.repeat_interleave(torch.arange(counts.numel(), device=device), counts,
                                       output_size=total)
        first = torch.cumsum(counts, 0) - counts
        local = torch.arange(total, device=device) - first[slot]
        i = atoms.repeat_interleave(offsets.shape[0])[slot]
        j = order[bin_start[tbin.flatten()[slot]] + local]
        # Shift relative to the unwrapped positions: bin image minus the atoms' own images.
        image = image.reshape(-1, 3)
        shift = image[slot] - frame.image[j] + frame.image[i]
        cell_of = cell[system_idx[atoms]].repeat_interleave(offsets.shape[0], 0)
        image_cart = torch.einsum("pi,pij->pj", image.to(cell.dtype), cell_of)[slot]
        vec = positions[j] + image_cart - atom_image_cart[j] - (positions[i] - atom_image_cart[i])
        keep = ((vec * vec).sum(-1) < cutoff[system_idx[i]] ** 2) & \
            ((i != j) | (shift != 0).any(-1))
        parts.append(Pairs(i[keep], j[keep], shift[keep]))
    return _concat(parts, device)
