"""Kinetic energy, temperature, degrees of freedom and Maxwell–Boltzmann velocities.

Per-system quantities are [S] float64 in the simulation's units (see hayabusa.units):
KE = ½ mvv2e Σ m v², T = 2 KE / (N_f k_B).
"""

from __future__ import annotations

import torch

from ..errors import InputError
from ..state import State, sum_over_systems
from ..units import UnitSystem, get_units


def per_system(value, n_systems: int, device, name: str = "value") -> torch.Tensor:
    """A scalar or a length-S sequence as a float64 [S] tensor."""
    t = torch.as_tensor(value, dtype=torch.float64, device=device).flatten()
    if t.numel() == 1:
        return t.expand(n_systems).clone()
    if t.numel() != n_systems:
        raise InputError(f"{name}: expected a scalar or {n_systems} values (one per system), "
                         f"got {t.numel()}")
    return t


def kinetic_energy(state: State, units: UnitSystem) -> torch.Tensor:
    """[S] kinetic energy."""
    mv2 = state.masses * (state.velocities * state.velocities).sum(-1)
    return 0.5 * units.mvv2e * sum_over_systems(mv2, state.system_idx, state.n_systems)


def degrees_of_freedom(state: State, remove_com: bool) -> torch.Tensor:
    """[S] float64: 3N, less 3 where the centre-of-mass momentum is removed (N > 1)."""
    n = state.n_atoms_per_system.to(torch.float64)
    return 3 * n - 3 * ((n > 1) & remove_com)


def temperature(ke: torch.Tensor, dof: torch.Tensor, units: UnitSystem) -> torch.Tensor:
    return 2 * ke / (dof.clamp(min=1) * units.kB)


def remove_com_velocity(state: State, several: torch.Tensor | None = None) -> None:
    """Subtract each system's centre-of-mass velocity in place (systems of one atom keep
    theirs). ``several`` [S, 1] bool, the systems of more than one atom, may be given (inside a
    CUDA graph, where counting them is not possible)."""
    sys = state.system_idx
    p = sum_over_systems(state.masses[:, None] * state.velocities, sys, state.n_systems)
    m = sum_over_systems(state.masses, sys, state.n_systems)
    v_com = (p / m[:, None]).to(state.dtype)
    if several is None:
        several = (state.n_atoms_per_system > 1)[:, None]
    state.velocities -= torch.where(several, v_com, torch.zeros_like(v_com))[sys]


def maxwell_boltzmann(state: State, temperature, units="metal", seed: int = 0,
                      remove_com: bool = True, exact: bool = True) -> State:
    """Draw velocities from the Maxwell–Boltzmann distribution at ``temperature`` (per system).

    With ``exact`` the velocities are rescaled so each system's instantaneous temperature is
    exactly the target. Seeded and reproducible on any device; sets ``state.velocities`` in
    place.
    """
    units = get_units(units)
    kT = per_system(temperature, state.n_systems, state.device, "temperature") * units.kB
    # Drawn on the CPU so that a seed gives the same velocities on every device.
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(state.positions.shape, generator=g, dtype=torch.float64)
    sigma = torch.sqrt(kT[state.system_idx] * units.ftm2v / state.masses.double())
    state.velocities.copy_(noise.to(state.device) * sigma[:, None])  # in place: graphs
    if remove_com:
        remove_com_velocity(state)
    if exact:
        dof = degrees_of_freedom(state, remove_com)
        t_now = temperature_of(state, units, dof)
        target = kT / units.kB
        scale = torch.where(t_now > 0, torch.sqrt(target / t_now.clamp(min=1e-300)),
                            torch.zeros_like(t_now))
        state.velocities *= scale.to(state.dtype)[state.system_idx, None]
    return state


def temperature_of(state: State, units: UnitSystem, dof: torch.Tensor) -> torch.Tensor:
    """[S] instantaneous temperature."""
    return temperature(kinetic_energy(state, units), dof, units)
