"""ModelPotential: any model core as a Potential (the seam between models and the engine).

A model core maps tensors to per-atom energies (``DeepPotSE.forward``). This adapter asks the
neighbor list for the grouped-by-type neighbours the core reads (``core.typed_request``),
calls the core on positions and cell (deformed by a zero strain when the stress is wanted),
and takes forces F = −∂E/∂r and stress σ = (1/V) ∂E/∂ε from one autograd pass. In training
mode with gradients on, the results keep their graph (force and stress losses); otherwise
they are detached.
"""

from __future__ import annotations

import torch

from ..potentials.base import Potential, PotentialResult
from ..state import sum_over_systems


class ModelPotential(Potential):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.cutoff = float(model.cutoff)
        self.species = tuple(model.species)
        self.core_radius = float(getattr(model, "core_radius", 0.0))

    @property
    def metadata(self) -> dict:
        """The model file's metadata (what the labels are, training data, …)."""
        return getattr(self.model, "metadata", {})

    def neighbor_requests(self):
        return (self.model.typed_request,)

    def forward(self, state, neighbors, compute_stress: bool = False) -> PotentialResult:
        typed = neighbors.typed(state, self.model.typed_request)
        keep_graph = self.model.training and torch.is_grad_enabled()
        with torch.enable_grad():
            positions = pos = state.positions.detach().requires_grad_(True)
            cell = state.cell
            if compute_stress:
                strain = torch.zeros(state.n_systems, 3, 3, dtype=state.dtype,
                                     device=state.device, requires_grad=True)
                deform = torch.eye(3, dtype=state.dtype, device=state.device) + strain
                pos = torch.einsum("ni,nij->nj", positions, deform[state.system_idx])
                cell = torch.einsum("sij,sjk->sik", state.cell, deform)
            atom_energy = self.model(pos, cell, typed.types, state.system_idx, typed.index,
                                     typed.shifts, list(typed.sel), typed.centers)
            energy = sum_over_systems(atom_energy, state.system_idx, state.n_systems)
            inputs = [positions, strain] if compute_stress else [positions]
            grads = torch.autograd.grad(energy.sum(), inputs, create_graph=keep_graph)
        if not keep_graph:
            energy, atom_energy = energy.detach(), atom_energy.detach()
        stress = None
        if compute_stress:
            stress = grads[1].to(torch.float64) / state.volume.to(torch.float64)[:, None, None]
        return PotentialResult(energy=energy, forces=-grads[0], stress=stress,
                               atom_energy=atom_energy)
