"""Any ASE calculator as a Potential, one structure at a time (metal units).

This is how reference methods and teacher models plug in; it runs on the host and syncs every
call, so it is for labelling and checks, not for the GPU hot loop.
"""

from __future__ import annotations

import numpy as np
import torch
from ase.stress import voigt_6_to_full_3x3_stress

from .base import Potential, PotentialResult


class AseCalculatorPotential(Potential):
    cutoff = 0.0  # the calculator finds its own neighbours

    def __init__(self, calculator):
        super().__init__()
        self.calculator = calculator

    def forward(self, state, neighbors=None, compute_stress: bool = False) -> PotentialResult:
        energies, forces, stresses, atom_energies = [], [], [], []
        for atoms in state.to_atoms(units="metal"):
            atoms.calc = self.calculator
            energies.append(atoms.get_potential_energy())
            forces.append(atoms.get_forces())
            if compute_stress:
                stresses.append(voigt_6_to_full_3x3_stress(atoms.get_stress()))
            if atom_energies is not None and "energies" in self.calculator.implemented_properties:
                atom_energies.append(atoms.get_potential_energies())
            else:  # this calculator has no per-atom energies
                atom_energies = None
        dev, dt = state.device, state.dtype
        return PotentialResult(
            energy=torch.tensor(energies, dtype=torch.float64, device=dev),
            forces=torch.tensor(np.concatenate(forces), dtype=dt, device=dev),
            stress=torch.tensor(np.stack(stresses), dtype=torch.float64, device=dev)
            if compute_stress else None,
            atom_energy=torch.tensor(np.concatenate(atom_energies), dtype=dt, device=dev)
            if atom_energies else None,
        )
