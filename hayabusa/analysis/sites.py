"""Site occupancy and jumps: each ion is assigned to a reference site, and moves between sites
are counted as jumps, with hysteresis and a minimum residence time to ignore rattling.

Assignment: an ion belongs to the nearest site within ``capture_radius_A``; outside every
capture sphere it keeps its last site (hysteresis), so an ion in transit is not a jump yet.
A visit shorter than ``min_residence`` frames is ignored (the ion counts as never having left
its previous site), so back-and-forth rattling across a capture boundary is not counted. Jumps
are changes of the site index; they are counted per pair of site labels ("24d->96h").

Garnet sites (``garnet_li_sites``) of cubic Li7La3Zr2O12 (Ia-3d, standard setting, Zr on 16a at
the origin; Wyckoff positions from /work/shared/reference/llzo-analysis-viz.md §1): tetrahedral
24d (3/8, 0, 1/4) and the octahedral cages, centred on 48g (1/8, y, 1/4 − y) with y = 0.70.
Octahedral Li is refined on the split 96h pair around each 48g centre, so a cage holds both 96h
positions; the cages are labelled "96h", and "96h->96h" counts moves between different cages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .pairs import frame_cells, pair_distances

# Ia-3d fractional sites of the conventional cell (a ≈ 12.97 Å).
_WYCKOFF = {"Zr": (0.0, 0.0, 0.0), "La": (0.125, 0.0, 0.25),
            "24d": (0.375, 0.0, 0.25), "96h": (0.125, 0.70, 0.25 - 0.70)}
_ZR_PER_CELL = 16


@dataclass
class Sites:
    positions: np.ndarray  # [M, 3] Cartesian, Å, in ``cell``
    labels: np.ndarray  # [M] str
    cell: np.ndarray  # [3, 3] reference cell; sites follow a changing cell (fixed fractions)


def assign_sites(positions, cell, sites: Sites, capture_radius_A: float = 1.0) -> np.ndarray:
    """[F, N] index of the nearest site within ``capture_radius_A`` of every ion in every frame
    of ``positions`` [F, N, 3] (periodic, wrapped or not; ``cell`` [3, 3] or [F, 3, 3]; the
    sites keep their fractional coordinates in every frame's cell); -1 where no site is that
    close."""
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != 3:
        raise InputError(f"positions: expected [frames, ions, 3], got shape {x.shape}")
    f, n, _ = x.shape
    m = len(sites.positions)
    cells = frame_cells(cell, f)
    frac = sites.positions @ np.linalg.inv(sites.cell)
    both = np.concatenate([np.einsum("mi,fij->fmj", frac, cells), x], axis=1)
    out = np.full((f, n), -1, dtype=np.int64)
    for frame, i, j, r in pair_distances(both, cells, capture_radius_A):
        keep = (i >= m) & (j < m)  # ion → site pairs
        frame, ion, site, r = frame[keep], i[keep] - m, j[keep], r[keep]
        key = frame * n + ion
        order = np.lexsort((r, key))
        first = np.ones(order.size, dtype=bool)
        first[1:] = key[order][1:] != key[order][:-1]
        pick = order[first]
        out[frame[pick], ion[pick]] = site[pick]
    return out


def _visits(assigned: np.ndarray, min_residence: int) -> list[list[int]]:
    """Per ion, the sequence of sites visited for ≥ ``min_residence`` frames (hysteresis:
    frames outside every site belong to the last visit)."""
    out = []
    for col in assigned.T:
        known = col >= 0
        if not known.any():
            out.append([])
            continue
        col = col[np.argmax(known):]
        last = np.maximum.accumulate(np.where(col >= 0, np.arange(col.size), 0))
        seq = col[last]
        starts = np.flatnonzero(np.r_[True, seq[1:] != seq[:-1]])
        lengths = np.diff(np.r_[starts, seq.size])
        kept: list[int] = []
        for k, (s, length) in enumerate(zip(seq[starts], lengths, strict=True)):
            if k > 0 and length < min_residence:
                continue  # too short: still on the previous site
            if not kept or kept[-1] != s:
                kept.append(int(s))
        out.append(kept)
    return out


def count_jumps(assigned, labels, min_residence: int = 1) -> dict[str, int]:
    """{"A->B": jumps} for every ordered pair of site labels, from ``assigned`` [F, N] (site
    index per frame, -1 outside all sites, from ``assign_sites``); ``labels`` [M] per site."""
    assigned = np.asarray(assigned)
    labels = np.asarray(labels)
    if int(min_residence) != min_residence or min_residence < 1:
        raise InputError(f"min_residence: expected an integer >= 1 frame, got {min_residence}")
    names = list(dict.fromkeys(labels.tolist()))
    counts = {f"{a}->{b}": 0 for a in names for b in names}
    for visits in _visits(assigned, int(min_residence)):
        for a, b in zip(visits[:-1], visits[1:], strict=True):
            counts[f"{labels[a]}->{labels[b]}"] += 1
    return counts


def garnet_li_sites(symbols, positions, cell, tolerance_A: float = 1.0) -> Sites | None:
    """Li sites (24d and octahedral "96h" cages) of a cubic garnet cell or an orthogonal
    supercell of it, placed on the structure's own La/Zr framework; None when the structure
    is not recognisably one (not 16 Zr per cubic cell, cell not cubic × integers, or La/Zr
    further than ``tolerance_A`` from the Ia-3d 24c/16a sites for every origin choice)."""
    from ase.spacegroup import crystal

    symbols = np.asarray(symbols)
    pos = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    n_zr = int((symbols == "Zr").sum())
    if n_zr == 0 or n_zr % _ZR_PER_CELL or np.abs(cell - np.diag(np.diag(cell))).max() > 1e-6:
        return None
    lengths = np.diag(cell)
    a = (abs(np.prod(lengths)) / (n_zr // _ZR_PER_CELL)) ** (1.0 / 3.0)
    reps = np.rint(lengths / a).astype(int)
    if (reps < 1).any() or reps.prod() != n_zr // _ZR_PER_CELL or \
            (np.abs(lengths / reps - a) > 0.03 * a).any():
        return None
    unit = np.diag(lengths / reps)
    offsets = np.stack(np.meshgrid(*[np.arange(r) for r in reps], indexing="ij"), -1)
    offsets = offsets.reshape(-1, 3) @ unit

    def orbit(name):
        at = crystal(["X"], [_WYCKOFF[name]], spacegroup=230, cellpar=[1, 1, 1, 90, 90, 90])
        frac = at.get_scaled_positions()
        return (offsets[:, None, :] + (frac @ unit)[None]).reshape(-1, 3)

    zr, la = orbit("Zr"), orbit("La")
    cations = np.concatenate([pos[symbols == "Zr"], pos[symbols == "La"]])
    reference = np.concatenate([zr, la])
    inv = np.linalg.inv(cell)
    for origin in pos[symbols == "Zr"][0] - zr[:_ZR_PER_CELL]:
        d = (cations[:, None, :] - reference[None, :, :] - origin) @ inv
        d = (d - np.rint(d)) @ cell
        if np.sqrt((d * d).sum(-1)).min(axis=1).max() <= tolerance_A:
            tet, octa = orbit("24d") + origin, orbit("96h") + origin
            return Sites(np.concatenate([tet, octa]),
                         np.array(["24d"] * len(tet) + ["96h"] * len(octa)), cell)
    return None


def li_hop_length(symbols, positions, cell) -> tuple[float, str]:
    """(hop length in Å, where it comes from) for the Li of one frame (``positions`` [N, 3],
    periodic ``cell`` [3, 3]): the shortest distance between two distinct Li sites of a
    garnet cell (``garnet_li_sites``; 24d to 96h cage, 2.0 Å at a = 12.97 Å), else the median
    over the Li of the distance to the nearest other Li (minimum image)."""
    symbols = np.asarray(symbols)
    sites = garnet_li_sites(symbols, positions, cell)
    if sites is not None:
        sd = min(r.min() for *_, r in pair_distances(sites.positions[None], sites.cell, 4.0))
        return float(sd), "garnet Li sites (shortest distance between two sites)"
    li = np.asarray(positions, dtype=np.float64)[symbols == "Li"]
    if len(li) < 2:
        raise InputError(f"hop length: needs 2 or more Li atoms to estimate, got {len(li)}")
    nearest = np.full(len(li), np.inf)
    for _, i, _, r in pair_distances(li[None], cell, 6.0):
        np.minimum.at(nearest, i, r)
    if not np.isfinite(nearest).all():
        raise InputError("hop length: some Li has no other Li within 6 Å; pass the hop length")
    return float(np.median(nearest)), "median nearest Li–Li distance in the first frame"
