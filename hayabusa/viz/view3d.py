"""Self-contained, rotatable 3D HTML view of a structure with Li trajectories (plotly).

The page inlines plotly.js (about 4.8 MB), so it opens offline from ``file://``. It shows one
toggleable trace per species (Jmol colours), the cell box, subsampled Li paths coloured by
time, an isosurface of the time-averaged Li density and semi-transparent grain-boundary
planes. Units: Å, ps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import ase
import ase.data
import numpy as np
import plotly.graph_objects as go
from ase.data.colors import jmol_colors

from ..errors import InputError
from ..files import write_atomic

MAX_PATH_POINTS = 100_000  # Li path points drawn (frames × ions), as budgeted in the reference
MAX_PATH_FRAMES = 500  # frames per drawn ion
MAX_GRID = 48  # isosurface grid points per axis
_CORNERS = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)


def _rgb(z: int) -> str:
    r, g, b = (int(round(255 * c)) for c in jmol_colors[z])
    return f"rgb({r},{g},{b})"


def _cell_box(cell: np.ndarray) -> go.Scatter3d:
    """The 12 edges of the cell parallelepiped as one line trace."""
    xyz = _CORNERS @ cell
    edges = [(a, b) for a in range(8) for b in range(a + 1, 8)
             if np.abs(_CORNERS[a] - _CORNERS[b]).sum() == 1]
    pts = []
    for a, b in edges:
        pts += [xyz[a], xyz[b], [np.nan] * 3]
    pts = np.array(pts)
    return go.Scatter3d(x=pts[:, 0], y=pts[:, 1], z=pts[:, 2], mode="lines", name="cell",
                        line=dict(color="black", width=3), hoverinfo="skip")


def _species_traces(atoms: ase.Atoms) -> list[go.Scatter3d]:
    """One marker trace per species, sized by covalent radius; legend clicks hide it."""
    traces = []
    for z in sorted(set(atoms.numbers.tolist())):
        idx = np.flatnonzero(atoms.numbers == z)
        pos = atoms.positions[idx].astype(np.float32)
        symbol = ase.data.chemical_symbols[z]
        traces.append(go.Scatter3d(
            x=pos[:, 0], y=pos[:, 1], z=pos[:, 2], mode="markers", name=symbol,
            marker=dict(size=6.0 * ase.data.covalent_radii[z], color=_rgb(z), opacity=1.0,
                        line=dict(width=0)),
            text=[f"{symbol} {i}" for i in idx], hoverinfo="text"))
    return traces


def subsample_paths(li_positions: np.ndarray, max_points: int = MAX_PATH_POINTS,
                    max_frames: int = MAX_PATH_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """Frame and ion indices of the drawn paths: every ``stride``-th frame (at most
    ``max_frames``) of evenly spread ions, with frames × ions ≤ ``max_points``."""
    n_frames, n_li = li_positions.shape[:2]
    stride = -(-n_frames // max(1, min(max_frames, max_points)))
    frames = np.arange(0, n_frames, stride)
    n_ions = max(1, min(n_li, max_points // len(frames)))
    ions = np.unique(np.linspace(0, n_li - 1, n_ions).round().astype(int))
    return frames, ions


def _path_traces(li_positions: np.ndarray, time_ps: np.ndarray | None, max_points: int,
                 max_frames: int) -> list[go.Scatter3d]:
    """Subsampled Li paths (one line trace, NaN gaps between ions, coloured by time) and
    its legend entry: plotly.js warns when it draws a legend icon for a line with a colour
    array, so the entry is a separate empty trace of the same legend group."""
    frames, ions = subsample_paths(li_positions, max_points, max_frames)
    sub = li_positions[frames][:, ions].transpose(1, 0, 2)  # [ions, frames, 3]
    gap = np.full((len(ions), 1, 3), np.nan)
    xyz = np.concatenate([sub, gap], axis=1).reshape(-1, 3).astype(np.float32)
    t = time_ps[frames] if time_ps is not None else frames.astype(float)
    colour = np.tile(np.append(t, t[-1]), len(ions)).astype(np.float32)
    label = "time (ps)" if time_ps is not None else "frame"
    paths = go.Scatter3d(
        x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], mode="lines", name="Li paths",
        legendgroup="li-paths", showlegend=False,
        line=dict(color=colour, colorscale="Viridis", width=2, showscale=True,
                  colorbar=dict(title=dict(text=label), len=0.6)),
        hoverinfo="skip")
    entry = go.Scatter3d(
        x=[None], y=[None], z=[None], mode="lines", legendgroup="li-paths",
        name=f"Li paths ({len(ions)} ions, {len(frames)} frames)",
        line=dict(color="rgb(33,145,140)", width=2), hoverinfo="skip")
    return [paths, entry]


def _block_average(grid: np.ndarray, max_grid: int) -> np.ndarray:
    """Average blocks of ``ceil(n / max_grid)`` voxels per axis (the last block may be
    partial; its centre is then off by less than half a block), so each axis has at most
    ``max_grid`` points."""
    for axis in range(3):
        n = grid.shape[axis]
        f = -(-n // max_grid)
        if f > 1:
            starts = np.arange(0, n, f)
            counts = np.diff(np.append(starts, n)).astype(float)
            shape = [1, 1, 1]
            shape[axis] = len(starts)
            grid = np.add.reduceat(grid, starts, axis=axis) / counts.reshape(shape)
    return grid


def _periodic_trilinear(grid: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Values of a periodic voxel grid (voxel centres at (i + 1/2)/n) at fractional
    coordinates ``frac`` [M, 3]."""
    n = np.array(grid.shape)
    u = frac * n - 0.5
    i0 = np.floor(u).astype(int)
    w = u - i0
    out = np.zeros(len(frac))
    for corner in np.ndindex(2, 2, 2):
        c = np.array(corner)
        idx = (i0 + c) % n
        weight = np.prod(np.where(c == 1, w, 1.0 - w), axis=1)
        out += weight * grid[idx[:, 0], idx[:, 1], idx[:, 2]]
    return out


def density_isosurface(density: np.ndarray, cell: np.ndarray, max_grid: int = MAX_GRID,
                       level_rel: float = 3.0) -> go.Isosurface:
    """Isosurface of a periodic density grid [nx, ny, nz] (per Å³) in ``cell`` [3, 3].

    The grid is block-averaged to ≤ ``max_grid`` points per axis and sampled on an
    axis-aligned grid over the cell's bounding box (zero outside the cell), so triclinic cells
    work too. The surface is drawn at ``level_rel`` × the mean density (at most half the
    maximum, so that a surface exists)."""
    grid = _block_average(np.asarray(density, float), max_grid)
    corners = _CORNERS @ cell
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    axes = [lo[a] + (np.arange(grid.shape[a]) + 0.5) / grid.shape[a] * (hi[a] - lo[a])
            for a in range(3)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    frac = pts @ np.linalg.inv(cell)
    inside = np.all((frac >= 0.0) & (frac < 1.0), axis=1)
    value = np.zeros(len(pts))
    value[inside] = _periodic_trilinear(grid, frac[inside])
    level = min(level_rel * float(grid.mean()), 0.5 * float(grid.max()))
    colour = _rgb(3)
    return go.Isosurface(
        x=pts[:, 0].astype(np.float32), y=pts[:, 1].astype(np.float32),
        z=pts[:, 2].astype(np.float32), value=value.astype(np.float32),
        isomin=level, isomax=float(value.max()), surface=dict(count=1),
        caps=dict(x_show=False, y_show=False, z_show=False),
        colorscale=[[0, colour], [1, colour]], showscale=False, opacity=0.35,
        name=f"Li density ≥ {level:.3g} Å⁻³", showlegend=True, hoverinfo="skip")


def _gb_plane_traces(cell: np.ndarray, normal_axis: int, positions_A) -> list[go.Mesh3d]:
    """Semi-transparent lattice planes spanned by the two other cell vectors, crossing
    coordinate ``z`` (Å) on the Cartesian ``normal_axis``."""
    if normal_axis not in (0, 1, 2):
        raise InputError(f"gb_planes: normal axis must be 0, 1 or 2, got {normal_axis!r}")
    if abs(cell[normal_axis, normal_axis]) < 1e-9:
        raise InputError(f"gb_planes: cell vector {normal_axis} has no component along "
                         f"axis {normal_axis}")
    a, b = (cell[k] for k in range(3) if k != normal_axis)
    traces = []
    for k, z in enumerate(positions_A):
        o = float(z) / cell[normal_axis, normal_axis] * cell[normal_axis]
        v = np.array([o, o + a, o + a + b, o + b])
        traces.append(go.Mesh3d(
            x=v[:, 0], y=v[:, 1], z=v[:, 2], i=[0, 0], j=[1, 2], k=[2, 3], color="gray",
            opacity=0.3, name="grain boundary", legendgroup="gb", showlegend=k == 0,
            hovertext=f"GB plane at {float(z):.2f} Å", hoverinfo="text"))
    return traces


def view_figure(atoms: ase.Atoms, li_positions=None, density=None, gb_planes=None,
                time_ps=None, title: str | None = None, max_path_points: int = MAX_PATH_POINTS,
                max_path_frames: int = MAX_PATH_FRAMES, max_grid: int = MAX_GRID) -> go.Figure:
    """The plotly Figure of :func:`li_paths_view` (same arguments, no file written)."""
    cell = np.asarray(atoms.cell.array, float)
    traces: list = _species_traces(atoms)
    if atoms.cell.rank == 3:
        traces.append(_cell_box(cell))
    if li_positions is not None:
        li = np.asarray(li_positions, float)
        if li.ndim != 3 or li.shape[2] != 3 or 0 in li.shape:
            raise InputError(f"li_positions: expected shape [frames, n_Li, 3], got {li.shape}")
        if not np.isfinite(li).all():
            raise InputError("li_positions: NaN or infinite coordinates")
        t = None
        if time_ps is not None:
            t = np.asarray(time_ps, float)
            if t.shape != (li.shape[0],):
                raise InputError(f"time_ps: expected shape ({li.shape[0]},), got {t.shape}")
        traces += _path_traces(li, t, max_path_points, max_path_frames)
    if density is not None:
        grid, dcell = (np.asarray(x, float) for x in density)
        if grid.ndim != 3 or 0 in grid.shape or dcell.shape != (3, 3):
            raise InputError(f"density: expected a grid [nx, ny, nz] and a cell [3, 3], got "
                             f"{grid.shape} and {dcell.shape}")
        if not np.isfinite(grid).all() or grid.min() < 0 or grid.max() <= 0:
            raise InputError("density: expected finite, non-negative values, not all zero")
        if abs(np.linalg.det(dcell)) < 1e-9:
            raise InputError("density: the cell has zero volume")
        traces.append(density_isosurface(grid, dcell, max_grid))
    if gb_planes is not None:
        axis, zs = gb_planes
        if atoms.cell.rank != 3:
            raise InputError("gb_planes: the structure has no 3D cell")
        traces += _gb_plane_traces(cell, int(axis), zs)
    fig = go.Figure(traces)
    axis_style = dict(showbackground=False, gridcolor="lightgray")
    fig.update_layout(
        title=dict(text=title or atoms.get_chemical_formula()),
        scene=dict(aspectmode="data", xaxis=dict(title=dict(text="x (Å)"), **axis_style),
                   yaxis=dict(title=dict(text="y (Å)"), **axis_style),
                   zaxis=dict(title=dict(text="z (Å)"), **axis_style)),
        legend=dict(x=0.0, y=1.0, title=dict(text="click to show/hide")),
        margin=dict(l=0, r=0, t=40, b=0), template="plotly_white")
    return fig


def li_paths_view(atoms: ase.Atoms, li_positions=None, density=None,
                  gb_planes: tuple[int, Sequence[float]] | None = None, *, path,
                  time_ps=None, title: str | None = None,
                  max_path_points: int = MAX_PATH_POINTS, max_path_frames: int = MAX_PATH_FRAMES,
                  max_grid: int = MAX_GRID) -> Path:
    """Write a self-contained HTML 3D view to ``path`` (atomically) and return the path.

    ``atoms``: the structure (drawn as is); ``li_positions`` [F, N_Li, 3] unwrapped Li
    positions (Å) or None; ``time_ps`` [F] times of those frames (colour scale; frame index
    when None); ``density``: (grid [nx, ny, nz] Li per Å³, cell [3, 3]) or None;
    ``gb_planes``: (normal axis 0/1/2, [positions in Å]) or None. Paths are subsampled to
    ≤ ``max_path_points`` points and ≤ ``max_path_frames`` frames per ion; the density grid to
    ≤ ``max_grid`` points per axis."""
    fig = view_figure(atoms, li_positions, density, gb_planes, time_ps, title,
                      max_path_points, max_path_frames, max_grid)
    return write_view(fig, path)


def write_view(fig: go.Figure, path) -> Path:
    """Write ``fig`` atomically as a full-window HTML page with plotly.js inlined."""
    return write_atomic(path, lambda tmp: fig.write_html(
        tmp, include_plotlyjs=True, full_html=True, default_height="95vh",
        config={"displaylogo": False}))
