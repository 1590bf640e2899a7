"""Binning frames: a non-degenerate basis per system for cell lists and image searches.

Along periodic directions the frame vectors are the cell's row vectors; along non-periodic
directions they are unit vectors orthogonal to the periodic ones, scaled to the extent of the
atoms. Fractional coordinates in this frame are wrapped into [0, 1) along periodic directions
and lie in [0, 1] along the others, so one code path covers full, mixed and no periodicity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..state import orthonormal_complement


@dataclass
class BinningFrame:
    basis: torch.Tensor  # [S, 3, 3] rows: periodic rows equal the cell's
    origin: torch.Tensor  # [S, 3]
    widths: torch.Tensor  # [S, 3] distance between opposite faces of the frame box
    frac: torch.Tensor  # [N, 3] fractional coordinates, wrapped along periodic directions
    image: torch.Tensor  # [N, 3] int64, floor of the unwrapped fractional coordinates


def build_frame(positions, cell, pbc, system_idx) -> BinningFrame:
    """Frame for every system; runs once per neighbor-list build (host work is [S,3,3])."""
    n_sys = cell.shape[0]
    cell64 = cell.detach().double().cpu().numpy()
    pbc_np = pbc.cpu().numpy()
    directions = np.zeros((n_sys, 3, 3))
    for s in range(n_sys):
        periodic = pbc_np[s]
        comp = orthonormal_complement(cell64[s][periodic])
        directions[s][periodic] = cell64[s][periodic]
        directions[s][~periodic] = comp
    dev, dt = positions.device, positions.dtype
    directions_t = torch.tensor(directions, device=dev, dtype=dt)
    # Extent of the atoms along each non-periodic unit vector.
    proj = torch.einsum("ni,nji->nj", positions, directions_t[system_idx])  # [N, 3]
    lo = torch.full((n_sys, 3), float("inf"), device=dev, dtype=dt)
    hi = torch.full((n_sys, 3), float("-inf"), device=dev, dtype=dt)
    idx = system_idx[:, None].expand(-1, 3)
    lo = lo.scatter_reduce(0, idx, proj, "amin")
    hi = hi.scatter_reduce(0, idx, proj, "amax")
    nonperiodic = ~pbc
    extent = torch.where(nonperiodic, (hi - lo) * (1 + 1e-9) + 1e-6, torch.ones_like(hi))
    basis = directions_t * extent[:, :, None]
    origin = torch.einsum("si,sij->sj", torch.where(nonperiodic, lo, torch.zeros_like(lo)),
                          directions_t)
    volume = torch.linalg.det(basis).abs()
    cross = torch.stack([torch.linalg.cross(basis[:, (i + 1) % 3], basis[:, (i + 2) % 3])
                         for i in range(3)], dim=1)
    widths = volume[:, None] / cross.norm(dim=-1)
    raw = torch.linalg.solve(basis[system_idx].transpose(1, 2),
                             (positions - origin[system_idx]).unsqueeze(-1)).squeeze(-1)
    periodic_atom = pbc[system_idx]
    image = torch.where(periodic_atom, torch.floor(raw), torch.zeros_like(raw))
    # Rounding can put a wrapped coordinate at exactly 1.0: move it to the next image.
    image = image + (periodic_atom & (raw - image >= 1.0)).to(raw.dtype)
    frac = raw - image
    return BinningFrame(basis, origin, widths, frac, image.to(torch.int64))
