"""The Potential protocol.

``potential(state, neighbors, compute_stress=False) -> PotentialResult`` with ``energy`` [S]
(float64), ``forces`` [N, 3], optional ``stress`` [S, 3, 3] (energy/length³, the ASE sign
convention σ = (1/V) ∂E/∂ε, kinetic part excluded) and ``atom_energy`` [N]. A potential
declares its ``cutoff`` (0: needs no neighbor list), the species it accepts and, through
``neighbor_requests``, the grouped-by-type neighbour views it reads (``neighbors.typed``), so
the neighbor list that serves it can size them before the first step. A potential has no
data-dependent shapes and no host synchronisation inside ``forward`` (it may be captured in a
CUDA graph); everything whose size depends on the data comes from the neighbor list.
"""

from __future__ import annotations

from dataclasses import dataclass

import ase.data
import torch

from ..neighbors import TypedRequest
from ..state import raise_for_atom

#: compute precisions: float64; float32 (float32 terms, float64 sums of systems); mixed
#: (float64 geometry, float32 networks, float64 sums) — models accept all three
PRECISIONS = ("float64", "float32", "mixed")


@dataclass
class PotentialResult:
    energy: torch.Tensor  # [S] float64
    forces: torch.Tensor  # [N, 3]
    stress: torch.Tensor | None = None  # [S, 3, 3]
    atom_energy: torch.Tensor | None = None  # [N]


class Potential(torch.nn.Module):
    """Base class: subclasses set ``cutoff`` and implement ``forward``.

    ``species`` (atomic numbers) is None for potentials that read the state's type ids
    directly (pair potentials with per-type parameters); ``n_types`` bounds those ids.
    ``core_radius`` (length): pairs closer than this mean the simulation has failed (the
    health check of ``md.Simulation``); 0 turns the check off.
    """

    cutoff: float = 0.0
    species: tuple[int, ...] | None = None
    n_types: int | None = None
    core_radius: float = 0.0

    def check_state(self, state) -> None:
        """Raise InputError naming the system and atom this potential cannot handle."""
        if self.species is not None:
            known = torch.tensor(self.species, device=state.device)
            names = [ase.data.chemical_symbols[z] for z in self.species]
            raise_for_atom(state, ~torch.isin(state.atomic_numbers, known), lambda a: (
                f"has species {ase.data.chemical_symbols[int(state.atomic_numbers[a])]}, "
                f"unknown to the potential (knows {names})"))
        if self.n_types is not None:
            raise_for_atom(state, state.type_ids >= self.n_types, lambda a: (
                f"has type id {int(state.type_ids[a])} but the potential has parameters for "
                f"{self.n_types} types"))

    def neighbor_requests(self) -> tuple[TypedRequest, ...]:
        """The grouped-by-type neighbour views ``forward`` reads (default: none)."""
        return ()
