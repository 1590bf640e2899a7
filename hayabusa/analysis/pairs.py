"""Pair distances in many frames at once, in any triclinic periodic cell.

Two searches: frames as a batch of systems for the in-house cell list
(``hayabusa.neighbors.cell_list_pairs``; any cutoff, several periodic images beyond half the
cell), or all pairs by minimum image when the cutoff is below half of every cell width (then
the minimum image is the only image within reach) and the cell is too small for cell lists to
skip much (the stencil of 5 half-cutoff bins per axis covers over a quarter of the cell).
Both return the same pairs; tests/test_analysis.py checks that."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..errors import InputError
from ..neighbors import cell_list_pairs

# Frames per batch are chosen so that a batch holds about this many pairs.
_PAIRS_PER_BATCH = 4_000_000


def frame_cells(cell, n_frames: int) -> np.ndarray:
    """[F, 3, 3] cells (row vectors) from one cell [3, 3] or one per frame [F, 3, 3]."""
    c = np.asarray(cell, dtype=np.float64)
    if c.shape == (3, 3):
        return np.broadcast_to(c, (n_frames, 3, 3))
    if c.shape != (n_frames, 3, 3):
        raise InputError(f"cell: expected [3, 3] or [{n_frames}, 3, 3], got {c.shape}")
    if (np.abs(np.linalg.det(c)) < 1e-9).any():
        raise InputError("cell: expected a non-degenerate periodic cell in every frame")
    return c


def pair_distances(positions, cell, cutoff: float, method: str = "auto"
                   ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(frame, i, j, r)`` arrays [P] for every ordered pair (i ≠ j or another image)
    with distance r < ``cutoff`` (Å) in the periodic frames ``positions`` [F, N, 3]; ``cell``
    [3, 3] or [F, 3, 3]. Yields several batches of frames; ``frame`` indexes ``positions``.
    ``method``: "auto", "min_image" or "cell_list" (see the module docstring)."""
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != 3:
        raise InputError(f"positions: expected [frames, atoms, 3], got shape {x.shape}")
    f, n, _ = x.shape
    cells = frame_cells(cell, f)
    volume = np.abs(np.linalg.det(cells))
    widths = volume[:, None] / np.linalg.norm(
        np.cross(cells[:, [1, 2, 0]], cells[:, [2, 0, 1]]), axis=-1)  # [F, 3]
    stencil = np.minimum(1.0, 2.5 * cutoff / widths).prod(axis=1).min()
    if method == "auto":
        method = "min_image" if cutoff < 0.5 * widths.min() and stencil > 0.25 else "cell_list"
    if method == "min_image":
        if cutoff >= 0.5 * widths.min():
            raise InputError(f"min-image pair search needs a cutoff below half the smallest "
                             f"cell width ({0.5 * widths.min():.4g} Å), got {cutoff}")
        yield from _min_image(x, cells, cutoff)
        return
    if method != "cell_list":
        raise InputError(f"method: expected 'auto', 'min_image' or 'cell_list', got {method!r}")
    per_frame = n * n * (4.0 / 3.0 * np.pi * cutoff**3) / volume.min() + n
    batch = int(max(1, min(f, _PAIRS_PER_BATCH // max(per_frame, 1.0))))
    for start in range(0, f, batch):
        stop = min(start + batch, f)
        s = stop - start
        pos = torch.from_numpy(np.ascontiguousarray(x[start:stop].reshape(-1, 3)))
        cel = torch.from_numpy(np.array(cells[start:stop]))
        sys_idx = torch.arange(s).repeat_interleave(n)
        pairs = cell_list_pairs(pos, cel, torch.ones(s, 3, dtype=torch.bool), sys_idx, cutoff)
        i, j, shift = pairs.i.numpy(), pairs.j.numpy(), pairs.shift.numpy()
        frame = i // n
        vec = (pos.numpy()[j] - pos.numpy()[i]
               + np.einsum("pi,pij->pj", shift.astype(np.float64), cells[start + frame]))
        yield start + frame, i % n, j % n, np.sqrt((vec * vec).sum(-1))


def _min_image(x: np.ndarray, cells: np.ndarray, cutoff: float):
    """All ordered pairs i ≠ j by minimum image, a block of frames × rows at a time."""
    f, n, _ = x.shape
    inv = np.linalg.inv(cells)
    rows = max(1, min(n, _PAIRS_PER_BATCH // max(n, 1)))
    for k in range(f):
        frac = x[k] @ inv[k]
        for a in range(0, n, rows):
            d = frac[None, :, :] - frac[a:a + rows, None, :]  # [rows, N, 3]
            d -= np.rint(d)
            vec = d @ cells[k]
            r = np.sqrt((vec * vec).sum(-1))
            i, j = np.nonzero(r < cutoff)
            i += a
            keep = i != j
            i, j = i[keep], j[keep]
            yield np.full(i.size, k), i, j, r[i - a, j]
