"""HayabusaCalculator: an ASE calculator around any hayabusa Potential, model core or model
file (metal units)."""

from __future__ import annotations

from pathlib import Path

from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from .models import ModelPotential, load_model
from .neighbors import NeighborList
from .potentials import Potential
from .state import State


class HayabusaCalculator(Calculator):
    """Energy (eV), forces (eV/Å), stress (eV/Å³, Voigt) and per-atom energies.
    ``potential``: a Potential, a model core (``models.registry``) or a model file path."""

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(self, potential, device="cpu", dtype=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(potential, (str, Path)):
            potential = load_model(potential)
        elif not isinstance(potential, Potential):
            potential = ModelPotential(potential)
        self.potential = potential.to(device)
        self.device = device
        self.dtype = dtype

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        import torch

        state = State.from_atoms(self.atoms, device=self.device,
                                 dtype=self.dtype or torch.float64,
                                 species=self.potential.species)
        self.potential.check_state(state)
        neighbors = NeighborList(self.potential.cutoff).build(state) \
            if self.potential.cutoff > 0 else None
        want_stress = "stress" in properties and bool(self.atoms.pbc.all())
        result = self.potential(state, neighbors, compute_stress=want_stress)
        self.results["energy"] = float(result.energy[0])
        self.results["free_energy"] = self.results["energy"]
        self.results["forces"] = result.forces.detach().double().cpu().numpy()
        if result.atom_energy is not None:
            self.results["energies"] = result.atom_energy.detach().double().cpu().numpy()
        if want_stress:
            self.results["stress"] = full_3x3_to_voigt_6_stress(
                result.stress[0].detach().cpu().numpy())
