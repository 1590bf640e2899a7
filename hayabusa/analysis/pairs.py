"""Pair distances in many frames at once, in any triclinic periodic cell (cutoffs beyond half
the cell give several periodic images). The frames are a batch of systems for a full-list
search of ``hayabusa.neighbors``: vesin when it is installed (``method="auto"``; C++, ~20×
faster on CPU for LLZO grain-boundary cells), else the in-house PyTorch cell list. Both return
the same pairs; tests/test_analysis.py checks that."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import numpy as np
import torch

from ..errors import InputError
from ..neighbors import cell_list_pairs
from ..neighbors.vesin_backend import vesin_pairs

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
    ``method``: "auto", "vesin" or "cell_list" (see the module docstring)."""
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != 3:
        raise InputError(f"positions: expected [frames, atoms, 3], got shape {x.shape}")
    f, n, _ = x.shape
    cells = frame_cells(cell, f)
    volume = np.abs(np.linalg.det(cells))
    if method == "auto":
        method = "vesin" if importlib.util.find_spec("vesin") is not None else "cell_list"
    if method not in ("vesin", "cell_list"):
        raise InputError(f"method: expected 'auto', 'vesin' or 'cell_list', got {method!r}")
    search = vesin_pairs if method == "vesin" else cell_list_pairs
    per_frame = n * n * (4.0 / 3.0 * np.pi * cutoff**3) / volume.min() + n
    batch = int(max(1, min(f, _PAIRS_PER_BATCH // max(per_frame, 1.0))))
    for start in range(0, f, batch):
        stop = min(start + batch, f)
        s = stop - start
        pos = torch.from_numpy(np.ascontiguousarray(x[start:stop].reshape(-1, 3)))
        cel = torch.from_numpy(np.array(cells[start:stop]))
        sys_idx = torch.arange(s).repeat_interleave(n)
        pairs = search(pos, cel, torch.ones(s, 3, dtype=torch.bool), sys_idx, cutoff)
        i, j, shift = pairs.i.numpy(), pairs.j.numpy(), pairs.shift.numpy()
        frame = i // n
        vec = (pos.numpy()[j] - pos.numpy()[i]
               + np.einsum("pi,pij->pj", shift.astype(np.float64), cells[start + frame]))
        yield start + frame, i % n, j % n, np.sqrt((vec * vec).sum(-1))

