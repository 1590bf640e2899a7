"""Trajectories as arrays for the analysis functions: positions [F, N, 3] (Å, unwrapped),
time_ps [F], cell [F, 3, 3] (row vectors), symbols [N]; read from hayabusa H5MD files or from
anything ASE reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import check_text_ends


@dataclass
class Trajectory:
    positions: np.ndarray  # [F, N, 3] unwrapped, Å
    time_ps: np.ndarray  # [F]
    cell: np.ndarray  # [F, 3, 3]
    symbols: np.ndarray  # [N] str


def unwrap(positions, cell) -> np.ndarray:
    """[F, N, 3] continuous positions from wrapped ones: each frame-to-frame displacement is
    taken as its minimum image (valid while atoms move < half a cell width per frame)."""
    x = np.asarray(positions, dtype=np.float64)
    cells = np.broadcast_to(np.asarray(cell, dtype=np.float64), (x.shape[0], 3, 3))
    frac = np.einsum("fni,fij->fnj", x, np.linalg.inv(cells))
    step = np.diff(frac, axis=0)
    step -= np.rint(step)
    cont = np.concatenate([frac[:1], frac[:1] + np.cumsum(step, axis=0)])
    return np.einsum("fni,fij->fnj", cont, cells)


def read_trajectory(path, frame_interval_fs: float | None = None,
                    system: int | None = None) -> Trajectory:
    """Read ``path``: a hayabusa H5MD file (``.h5``/``.h5md``; positions already unwrapped,
    metal units; ``system`` picks one system of a batch, None: the file must hold one) or
    any ASE-readable trajectory
    (positions unwrapped here; frame times from ``atoms.info["time"]`` in fs, as hayabusa's
    extxyz writes them, else ``frame_interval_fs`` must be given)."""
    path = Path(path)
    if path.suffix in (".h5", ".h5md", ".hdf5"):
        from ..md.trajectory import read_h5md

        data = read_h5md(path)
        if system is None:
            if len(data) != 1:
                raise InputError(f"{path}: holds {len(data)} systems; expected one (or pass "
                                 "system=)")
            system = next(iter(data))
        if system not in data:
            raise InputError(f"{path}: no system {system} (it holds {sorted(data)})")
        d = data[system]
        if d["units"] != "metal":
            raise InputError(f"{path}: expected metal units (Å, fs), got {d['units']!r}")
        from ase.data import chemical_symbols

        symbols = np.array([chemical_symbols[z] for z in d["atomic_numbers"]])
        return Trajectory(d["positions"], d["time"] / 1000.0, d["cell"], symbols)
    import ase.io

    check_text_ends(path)
    try:
        frames = ase.io.read(path, index=":")
    except Exception as exc:  # ASE raises many types for unreadable files
        raise InputError(f"{path}: cannot read a trajectory ({exc})") from None
    if not frames:
        raise InputError(f"{path}: no frames")
    symbols = np.array(frames[0].get_chemical_symbols())
    if any(a.get_chemical_symbols() != symbols.tolist() for a in frames):
        raise InputError(f"{path}: the atoms (count or order) change between frames")
    cell = np.array([a.cell.array for a in frames])
    positions = np.array([a.positions for a in frames])
    if frames[0].pbc.all():
        positions = unwrap(positions, cell)
    if all("time" in a.info for a in frames):
        time_ps = np.array([float(a.info["time"]) for a in frames]) / 1000.0
    elif frame_interval_fs is not None:
        time_ps = np.arange(len(frames)) * frame_interval_fs / 1000.0
    else:
        raise InputError(f"{path}: frames carry no 'time'; pass frame_interval_fs")
    return Trajectory(positions, time_ps, cell, symbols)
