"""Labelled frames from anything ASE reads (extxyz, Quantum ESPRESSO, VASP OUTCAR/vasprun.xml,
ASE databases): validation, summary, seeded splits, per-species reference energies and
environment statistics.

Units: Å, eV, eV/Å; stress in eV/Å³ with ASE's sign convention (a virial given instead is
converted: σ = −W/V).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ase
import ase.data
import numpy as np

from ..builders import read_images
from ..errors import InputError
from ..files import check_text_ends


@dataclass
class Frame:
    atoms: ase.Atoms
    energy: float  # eV
    forces: np.ndarray  # [n, 3] eV/Å
    stress: np.ndarray | None  # [3, 3] eV/Å³ or None
    source: str  # "file:frame" for messages


def _labels(atoms: ase.Atoms, where: str) -> tuple[float, np.ndarray, np.ndarray | None]:
    calc = atoms.calc
    results = getattr(calc, "results", {}) if calc is not None else {}
    info = atoms.info
    energy = results.get("energy", results.get("free_energy", info.get("energy")))
    if energy is None:
        raise InputError(f"{where}: frame has no energy label")
    forces = results.get("forces", atoms.arrays.get("forces"))
    if forces is None:
        raise InputError(f"{where}: frame has no forces label")
    forces = np.asarray(forces, dtype=float)
    if forces.shape != (len(atoms), 3):
        raise InputError(f"{where}: forces have shape {forces.shape}, expected "
                         f"({len(atoms)}, 3)")
    stress = results.get("stress", info.get("stress"))
    if stress is not None:
        stress = np.asarray(stress, dtype=float)
        if stress.shape == (6,):
            from ase.stress import voigt_6_to_full_3x3_stress

            stress = voigt_6_to_full_3x3_stress(stress)
        stress = stress.reshape(3, 3)
    elif "virial" in info and atoms.cell.rank == 3:
        stress = -np.asarray(info["virial"], dtype=float).reshape(3, 3) / atoms.get_volume()
    values = [np.atleast_1d(energy), forces] + ([stress] if stress is not None else [])
    if not all(np.isfinite(v).all() for v in values):
        raise InputError(f"{where}: NaN or infinite label")
    return float(energy), forces, stress


def load_frames(paths: str | Path | Sequence[str | Path], index: str = ":",
                species: Sequence[int] | None = None) -> list[Frame]:
    """Read every frame of ``paths``; InputError names the file and frame index of a bad one.

    ``species`` (atomic numbers), when given, must cover every atom."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    frames = []
    for path in paths:
        check_text_ends(path)
        for k, atoms in enumerate(read_images(path, index)):
            where = f"{path}, frame {k}"
            if not np.isfinite(atoms.positions).all():
                raise InputError(f"{where}: NaN or infinite coordinates")
            if species is not None:
                unknown = sorted(set(atoms.numbers.tolist()) - set(species))
                if unknown:
                    raise InputError(f"{where}: species "
                                     f"{[ase.data.chemical_symbols[z] for z in unknown]} "
                                     f"unknown to the model")
            energy, forces, stress = _labels(atoms, where)
            frames.append(Frame(atoms, energy, forces, stress, f"{path}:{k}"))
    if not frames:
        raise InputError(f"{', '.join(map(str, paths))}: no frames")
    return frames


def summary(frames: Sequence[Frame]) -> str:
    """Frames, species, labels present and the range of energy per atom."""
    numbers = sorted({int(z) for f in frames for z in f.atoms.numbers})
    e = np.array([f.energy / len(f.atoms) for f in frames])
    n_stress = sum(f.stress is not None for f in frames)
    return (f"{len(frames)} frames, {sum(len(f.atoms) for f in frames)} atoms; species "
            f"{[ase.data.chemical_symbols[z] for z in numbers]}; labels energy, forces"
            f"{', stress' if n_stress else ''} ({n_stress} with stress); energy per atom "
            f"{e.min():.4f} … {e.max():.4f} eV")


def split(frames: Sequence[Frame], fractions=(0.8, 0.1, 0.1), seed: int = 0):
    """Seeded train/valid/test split by frame."""
    order = np.random.default_rng(seed).permutation(len(frames))
    n_train = int(round(fractions[0] * len(frames)))
    n_valid = int(round(fractions[1] * len(frames)))
    pick = [frames[i] for i in order]
    return pick[:n_train], pick[n_train:n_train + n_valid], pick[n_train + n_valid:]


def fit_reference_energies(frames: Sequence[Frame], species: Sequence[int]) -> np.ndarray:
    """Per-species E0 [T] (eV) by least squares of frame energies on species counts."""
    counts = np.array([[np.sum(f.atoms.numbers == z) for z in species] for f in frames],
                      dtype=float)
    energies = np.array([f.energy for f in frames])
    e0, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return e0
