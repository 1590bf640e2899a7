"""Partial radial distribution functions g_ab(r) of periodic frames (any triclinic cell).

    g_ab(r) = Σ_frames n_ab(r) / Σ_frames [N_a (N_b − δ_ab) / V] / (4π/3 (r₊³ − r₋³)),

n_ab counting ordered pairs (i in a, j in b, j ≠ i, every periodic image) whose distance falls
in the shell [r₋, r₊). An ideal gas gives g = 1 at every r, also beyond half the cell.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .pairs import frame_cells, pair_distances


def rdf(positions, cell, symbols, pairs, r_max: float = 8.0, dr: float = 0.05
        ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(r_A [B] bin centres, {"A-B": g [B]}) for the species pairs ``pairs`` (e.g.
    [("Li", "O"), ("Li", "Li")]) over the frames ``positions`` [F, N, 3] (or one frame [N, 3],
    wrapped or not); ``cell`` [3, 3] or [F, 3, 3]; ``symbols`` [N]."""
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    symbols = np.asarray(symbols)
    if x.ndim != 3 or symbols.shape != (x.shape[1],):
        raise InputError(f"rdf: expected positions [frames, {symbols.size}, 3] for "
                         f"{symbols.size} symbols, got {x.shape}")
    if not (r_max > 0 and 0 < dr <= r_max):
        raise InputError(f"rdf: expected 0 < dr <= r_max, got dr={dr}, r_max={r_max}")
    pairs = [(str(a), str(b)) for a, b in pairs]
    for a, b in pairs:
        for s in (a, b):
            if not (symbols == s).any():
                raise InputError(f"rdf: species {s!r} of pair {a}-{b} is not in the structure")
    n_bins = int(round(r_max / dr))
    edges = np.arange(n_bins + 1) * dr
    cells = frame_cells(cell, x.shape[0])
    volumes = np.abs(np.linalg.det(cells))
    names = list(dict.fromkeys(symbols.tolist()))
    code = np.array([names.index(s) for s in symbols])
    counts = {p: np.zeros(n_bins) for p in pairs}
    for _, i, j, r in pair_distances(x, cells, edges[-1]):
        b = (r / dr).astype(np.int64)
        ok = b < n_bins
        ci, cj, b = code[i[ok]], code[j[ok]], b[ok]
        for a_name, b_name in pairs:
            sel = (ci == names.index(a_name)) & (cj == names.index(b_name))
            counts[(a_name, b_name)] += np.bincount(b[sel], minlength=n_bins)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    out = {}
    for a_name, b_name in pairs:
        na, nb = (symbols == a_name).sum(), (symbols == b_name).sum()
        norm = na * (nb - (a_name == b_name)) * (1.0 / volumes).sum()
        out[f"{a_name}-{b_name}"] = counts[(a_name, b_name)] / (norm * shell) if norm > 0 \
            else np.zeros(n_bins)
    return 0.5 * (edges[1:] + edges[:-1]), out
