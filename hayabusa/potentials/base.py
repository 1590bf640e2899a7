"""The Potential protocol.

``potential(state, neighbors, compute_stress=False) -> PotentialResult`` with ``energy`` [S]
(float64), ``forces`` [N, 3], optional ``stress`` [S, 3, 3] (energy/length³, the ASE sign
convention σ = (1/V) ∂E/∂ε, kinetic part excluded) and ``atom_energy`` [N]. A potential
declares its ``cutoff`` (0: needs no neighbor list) and the species it accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

import ase.data
import torch

from ..errors import InputError


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
    """

    cutoff: float = 0.0
    species: tuple[int, ...] | None = None
    n_types: int | None = None

    def check_state(self, state) -> None:
        """Raise InputError naming the system and atom this potential cannot handle."""
        if self.species is not None:
            known = torch.tensor(self.species, device=state.device)
            bad = ~torch.isin(state.atomic_numbers, known)
            what = "species {} is unknown to the potential (knows {})"
            _raise_first(state, bad, lambda z: what.format(
                ase.data.chemical_symbols[z], [ase.data.chemical_symbols[s] for s in self.species]),
                state.atomic_numbers)
        if self.n_types is not None:
            bad = state.type_ids >= self.n_types
            _raise_first(state, bad, lambda t: f"has type id {t} but the potential has "
                         f"parameters for {self.n_types} types", state.type_ids)


def _raise_first(state, bad, message, values) -> None:
    if bool(bad.any()):
        atom = int(torch.nonzero(bad)[0])
        system = int(state.system_idx[atom])
        first = int(torch.nonzero(state.system_idx == system)[0])
        raise InputError(f"system {system}, atom {atom - first}: {message(int(values[atom]))}")
