"""Benchmark systems (reduced units): the LAMMPS LJ liquid and Kob–Andersen replicas."""

from __future__ import annotations

from ..builders import kob_andersen_mixture, lattice

LJ_DENSITY = 0.8442  # as LAMMPS bench/in.lj


def lj_liquid(n_atoms: int):
    """fcc lattice of 4·n³ ≈ ``n_atoms`` atoms at ρ* = 0.8442, masses 1."""
    n = max(1, round((n_atoms / 4) ** (1 / 3)))
    return lattice("fcc", n, density=LJ_DENSITY, mass=1.0)


def kob_andersen_replicas(replicas: int, atoms_per_replica: int = 4096, seed: int = 0):
    """``replicas`` independent Kob–Andersen boxes at ρ = 1.2 (seeds seed, seed+1, …)."""
    return [kob_andersen_mixture(atoms_per_replica, 1.2, 0.8, seed=seed + r)
            for r in range(replicas)]
