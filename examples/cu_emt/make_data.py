"""Make examples/cu_emt/cu_emt.extxyz: 200 fcc Cu frames (32 atoms) labelled by ASE's EMT.

    python examples/cu_emt/make_data.py [OUTPUT]

30 perturbed lattices (a = 3.50–3.72 Å, atoms rattled by 0.01–0.10 Å), 30 strained cells
(symmetric strain up to ±4 %, rattled by 0.05 Å) and 140 snapshots of Langevin MD at 300,
450, …, 1200 K (20 per temperature, 100 fs apart after 400 fs of equilibration, in cells with
a random lattice constant and a small strain). Labels: energy (eV), forces (eV/Å), stress
(eV/Å³). Seeded: the same command writes the same file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import ase
import ase.io
import ase.units
import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin

TEMPERATURES_K = (300, 450, 600, 750, 900, 1050, 1200)


def _cell(rng, a_range=(3.58, 3.66), max_strain=0.01):
    atoms = bulk("Cu", "fcc", a=rng.uniform(*a_range), cubic=True).repeat(2)
    e = rng.uniform(-max_strain, max_strain, (3, 3))
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + (e + e.T) / 2), scale_atoms=True)
    return atoms


def _labelled(atoms, config_type: str):
    atoms = ase.Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True)
    atoms.calc = EMT()
    energy, forces, stress = (atoms.get_potential_energy(), atoms.get_forces(),
                              atoms.get_stress())
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
    atoms.info["config_type"] = config_type
    return atoms


def make_frames(seed: int = 2024, snapshots_per_temperature: int = 20) -> list:
    """The labelled frames, in a fixed order."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(30):
        atoms = _cell(rng, (3.50, 3.72), 0.0)
        atoms.rattle(rng.uniform(0.01, 0.10), seed=int(rng.integers(1 << 30)))
        frames.append(_labelled(atoms, "lattice"))
    for _ in range(30):
        atoms = _cell(rng, (3.58, 3.64), 0.04)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        frames.append(_labelled(atoms, "strain"))
    for temperature in TEMPERATURES_K:
        atoms = _cell(rng)
        atoms.calc = EMT()
        md_rng = np.random.RandomState(int(rng.integers(1 << 30)))
        kt = ase.units.kB * temperature
        atoms.set_momenta(md_rng.standard_normal((len(atoms), 3))
                          * np.sqrt(atoms.get_masses() * kt)[:, None])
        dyn = Langevin(atoms, 4 * ase.units.fs, temperature_K=temperature,
                       friction=0.02 / ase.units.fs, fixcm=False, rng=md_rng)
        dyn.run(100)
        for _ in range(snapshots_per_temperature):
            dyn.run(25)
            frames.append(_labelled(atoms, f"md_{temperature}K"))
    return frames


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else Path(__file__).with_name("cu_emt.extxyz")
    frames = make_frames()
    ase.io.write(path, frames, format="extxyz")
    print(f"wrote {len(frames)} frames to {path}")


if __name__ == "__main__":
    main()
