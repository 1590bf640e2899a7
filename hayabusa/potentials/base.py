"""The Potential protocol.

``potential(state, neighbors, compute_stress=False) -> PotentialResult`` with ``energy`` [S]
(float64), ``forces`` [N, 3], optional ``stress`` [S, 3, 3] (energy/length³, the ASE sign
convention σ = (1/V) ∂E/∂ε, kinetic part excluded) and ``atom_energy`` [N]. A potential
declares its ``cutoff`` (0: needs no neighbor list) and the species it accepts.

Steps that run without host synchronisation (``StepBlocks``, captured in a CUDA graph on a
GPU) evaluate potentials inside ``fixed_shapes()``: a potential whose intermediate shapes
depend on the data (DeepPot-SE's per-type neighbour sections) sizes them on the host
beforehand in ``fix_sizes`` and flags on the device when they proved too small
(``sizes_overflowed``); the block is then undone and run again with larger sizes.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import ase.data
import torch

from ..state import raise_for_atom

_FIXED = threading.local()


@contextlib.contextmanager
def fixed_shapes():
    """Force evaluations inside take their data-dependent shapes from ``fix_sizes`` and do not
    synchronise with the host (as they must inside a CUDA graph)."""
    before = getattr(_FIXED, "active", False)
    _FIXED.active = True
    try:
        yield
    finally:
        _FIXED.active = before


def shapes_fixed(x: torch.Tensor) -> bool:
    """True inside ``fixed_shapes()`` or while a CUDA graph is captured on ``x``'s device."""
    return getattr(_FIXED, "active", False) or (x.is_cuda and
                                                 torch.cuda.is_current_stream_capturing())


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
            names = [ase.data.chemical_symbols[z] for z in self.species]
            raise_for_atom(state, ~torch.isin(state.atomic_numbers, known), lambda a: (
                f"has species {ase.data.chemical_symbols[int(state.atomic_numbers[a])]}, "
                f"unknown to the potential (knows {names})"))
        if self.n_types is not None:
            raise_for_atom(state, state.type_ids >= self.n_types, lambda a: (
                f"has type id {int(state.type_ids[a])} but the potential has parameters for "
                f"{self.n_types} types"))

    def fix_sizes(self, state, neighbors) -> tuple:
        """Size the shapes used inside ``fixed_shapes()`` from ``state`` (host side, may
        synchronise; before a block is captured and after one overflowed). Returns those
        sizes; graphs captured with other sizes are dropped. Default: none."""
        return ()

    def sizes_overflowed(self) -> torch.Tensor | None:
        """[] bool on the device: an evaluation inside ``fixed_shapes()`` since the last
        ``fix_sizes`` needed larger sizes (its results are wrong). None: cannot happen."""
        return None
