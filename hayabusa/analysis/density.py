"""Time-averaged number density of a species on a grid over the periodic cell."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .pairs import frame_cells


def grid_shape(cell, spacing_A: float) -> tuple[int, int, int]:
    """Voxels per cell vector so that each is at most ``spacing_A`` long along its vector."""
    if spacing_A <= 0:
        raise InputError(f"spacing_A: expected > 0, got {spacing_A}")
    lengths = np.linalg.norm(np.asarray(cell, dtype=np.float64).reshape(-1, 3, 3)[0], axis=1)
    return tuple(int(max(1, np.ceil(v / spacing_A))) for v in lengths)


def density_grid(positions, cell, shape: tuple[int, int, int]) -> np.ndarray:
    """[nx, ny, nz] time-averaged number density (atoms per Å³) of the atoms ``positions``
    [F, N, 3] (unwrapped or not: wrapped into the cell here) on a grid of ``shape`` voxels along
    the cell vectors; ``cell`` [3, 3] or [F, 3, 3]. Voxel (i, j, k) covers the fractional
    coordinates [i/nx, (i+1)/nx) × …; the sum of density × mean voxel volume is N."""
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != 3:
        raise InputError(f"positions: expected [frames, atoms, 3], got shape {x.shape}")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"shape: expected three positive voxel counts, got {shape}")
    cells = frame_cells(cell, x.shape[0])
    frac = np.einsum("fni,fij->fnj", x, np.linalg.inv(cells))
    frac -= np.floor(frac)
    idx = np.minimum((frac * shape).astype(np.int64), np.array(shape) - 1)
    flat = np.ravel_multi_index((idx[..., 0], idx[..., 1], idx[..., 2]), shape).ravel()
    counts = np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape)
    voxel = np.abs(np.linalg.det(cells)).mean() / np.prod(shape)
    return counts / (x.shape[0] * voxel)
