"""Segregation to grain-boundary planes: density profiles against the distance from the
nearest plane, Li/Zr per slab and the Gibbs excess.

Geometry: the planes are normal to the Cartesian axis ``normal_axis``, the cell row along that
axis is parallel to it and the other two rows are perpendicular to it (as in the bicrystals of
``hayabusa.materials``); ``planes_A`` are the plane positions (Å) along the axis. Coordinates
along the normal are taken modulo the cell height L, and d(z) is the periodic distance to the
nearest plane. Slabs are bins of d; the volume of the slab d₋ ≤ d < d₊ is exactly
A · Σ_gaps [min(g, 2d₊) − min(g, 2d₋)] over the gaps g between consecutive planes.

Gibbs excess (published practice, /work/shared/reference/llzo-analysis-viz.md §2):

    Γ = (N − c_bulk · V) / (n_planes · A)      (2A for a periodic bicrystal with two planes),

with c_bulk the time-averaged density of the species where d ≥ ``bulk_from_A`` (default: half
the largest distance from any plane). Its error is block averaging over time: V · std(c_b) /
√n_blocks / (n_planes · A).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .pairs import frame_cells


@dataclass
class SegregationProfile:
    distance_A: np.ndarray  # [B] bin centres: distance to the nearest plane
    density_rel: np.ndarray  # [B] ρ(d) / c_bulk of the species
    per_reference: np.ndarray  # [B] species / reference counts in a window (nan: none)
    gibbs_excess_per_A2: float
    gibbs_excess_err_per_A2: float
    c_bulk_per_A3: float


def _geometry(cell, normal_axis: int, planes_A) -> tuple[float, float, np.ndarray]:
    """(L, A, sorted planes modulo L) of ``cell``; checks the cell shape and the planes."""
    if normal_axis not in (0, 1, 2):
        raise InputError(f"normal_axis: expected 0, 1 or 2, got {normal_axis!r}")
    cell = np.asarray(cell, dtype=np.float64)
    others = [k for k in range(3) if k != normal_axis]
    row = cell[normal_axis]
    if np.abs(np.delete(row, normal_axis)).max() > 1e-6 * abs(row[normal_axis]) or \
            np.abs(cell[others, normal_axis]).max() > 1e-6 * abs(row[normal_axis]):
        raise InputError(f"cell: the GB analysis needs cell row {normal_axis} along axis "
                         f"{normal_axis} and the other rows perpendicular to it, got {cell}")
    length = abs(row[normal_axis])
    area = float(np.linalg.norm(np.cross(cell[others[0]], cell[others[1]])))
    planes = np.sort(np.mod(np.asarray(planes_A, dtype=np.float64).ravel(), length))
    if planes.size == 0 or (planes.size > 1 and np.diff(planes).min() <= 0):
        raise InputError(f"gb_planes_A: expected distinct plane positions, got {planes_A}")
    return length, area, planes


def plane_distance(z, planes, length: float) -> np.ndarray:
    """Periodic distance of coordinates ``z`` (any shape) to the nearest of ``planes``."""
    d = np.mod(np.asarray(z)[..., None] - planes + 0.5 * length, length) - 0.5 * length
    return np.abs(d).min(axis=-1)


def _measure_below(x, gaps) -> np.ndarray:
    """Length of the z-range with distance to the nearest plane < x (x any shape)."""
    return np.minimum(gaps, 2.0 * np.asarray(x)[..., None]).sum(axis=-1)


def gb_profile(positions, cell, symbols, normal_axis: int, planes_A, species: str = "Li",
               reference: str = "Zr", bin_width_A: float = 1.0, bulk_from_A: float | None = None,
               n_blocks: int = 5, ratio_window_A: float = 3.0) -> SegregationProfile:
    """Profile and Gibbs excess of ``species`` around the planes ``planes_A`` from the frames
    ``positions`` [F, N, 3] (unwrapped or not); ``cell`` [3, 3] or [F, 3, 3] (the mean is
    used). ``per_reference``: species/reference counts (Li/Zr corrects for the framework
    density) over the slabs whose centres lie within ±``ratio_window_A``/2 of each bin centre:
    the cation layers of a GB cell are ~2 Å apart, so 1 Å slabs alone often hold no Zr."""
    x = np.asarray(positions, dtype=np.float64)
    symbols = np.asarray(symbols)
    if x.ndim != 3 or x.shape[2] != 3 or symbols.shape != (x.shape[1],):
        raise InputError(f"positions: expected [frames, {symbols.size}, 3], got {x.shape}")
    if not (symbols == species).any():
        raise InputError(f"segregation: species {species!r} is not in the structure")
    if bin_width_A <= 0:
        raise InputError(f"bin_width_A: expected > 0, got {bin_width_A}")
    f = x.shape[0]
    if int(n_blocks) != n_blocks or not 2 <= n_blocks <= f:
        raise InputError(f"n_blocks: expected an integer in 2..{f} (frames), got {n_blocks!r}")
    mean_cell = frame_cells(cell, f).mean(axis=0)
    length, area, planes = _geometry(mean_cell, normal_axis, planes_A)
    gaps = np.diff(np.r_[planes, planes[0] + length])
    d_max = 0.5 * gaps.max()
    bulk_from = 0.5 * d_max if bulk_from_A is None else float(bulk_from_A)
    if not 0 <= bulk_from < d_max:
        raise InputError(f"bulk_from_A: expected 0 <= value < {d_max:g} Å (half the largest "
                         f"plane spacing), got {bulk_from_A}")
    edges = np.arange(0.0, d_max + bin_width_A, bin_width_A)
    edges[-1] = min(edges[-1], d_max)
    edges = edges[np.r_[True, np.diff(edges) > 1e-9]]
    slab_volume = area * np.diff(_measure_below(edges, gaps))
    bulk_volume = area * (length - _measure_below(bulk_from, gaps))

    d = plane_distance(x[..., normal_axis], planes, length)  # [F, N]
    is_sp, is_ref = symbols == species, symbols == reference
    d_sp = d[:, is_sp]
    counts = np.histogram(d_sp, bins=edges)[0].astype(np.float64)
    ref_counts = np.histogram(d[:, is_ref], bins=edges)[0].astype(np.float64)
    in_bulk = (d_sp >= bulk_from).sum(axis=1)  # [F]
    c_bulk = in_bulk.sum() / (f * bulk_volume)
    if c_bulk <= 0:
        raise InputError(f"segregation: no {species} at distances >= {bulk_from:g} Å from the "
                         "planes (the bulk reference region); lower bulk_from_A")
    block = f // n_blocks
    c_blocks = np.array([in_bulk[b * block:(b + 1) * block].mean() / bulk_volume
                         for b in range(n_blocks)])
    volume = area * length
    n_planes = planes.size
    n_sp = int(is_sp.sum())
    gamma = (n_sp - c_bulk * volume) / (n_planes * area)
    gamma_err = volume * c_blocks.std(ddof=1) / math.sqrt(n_blocks) / (n_planes * area)
    half = int(np.floor(0.5 * ratio_window_A / bin_width_A + 1e-9))
    lo = np.clip(np.arange(counts.size) - half, 0, None)
    hi = np.clip(np.arange(counts.size) + half + 1, None, counts.size)
    sp_sum = np.r_[0.0, np.cumsum(counts)]
    ref_sum = np.r_[0.0, np.cumsum(ref_counts)]
    sp_win, ref_win = sp_sum[hi] - sp_sum[lo], ref_sum[hi] - ref_sum[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_ref = np.where(ref_win > 0, sp_win / ref_win, np.nan)
    return SegregationProfile(0.5 * (edges[1:] + edges[:-1]),
                              counts / (f * slab_volume) / c_bulk, per_ref,
                              float(gamma), float(gamma_err), float(c_bulk))
