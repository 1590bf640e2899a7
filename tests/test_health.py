"""Health checks: per system and physical. Each failure stops the run naming the step, the
system and the atom(s) and the likely cause; the last good checkpoint stays; a healthy run
(thermal fluctuations, a crystal at 0 K) never trips them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from hayabusa import SimulationError, State
from hayabusa.md import CheckpointWriter, Simulation, VelocityVerlet, maxwell_boltzmann
from hayabusa.potentials import LennardJones


def crystals(n: int = 2, rattle: float = 0.03) -> list[Atoms]:
    out = []
    for k in range(n):
        atoms = bulk("Ar", "fcc", a=1.6, cubic=True).repeat(2)
        atoms.set_masses(np.ones(len(atoms)))
        atoms.rattle(rattle, seed=k)
        out.append(atoms)
    return out


def simulation(atoms_list, timestep=0.004, **kwargs) -> Simulation:
    state = State.from_atoms(atoms_list, units="lj")
    maxwell_boltzmann(state, 0.5, units="lj", seed=3)
    return Simulation(state, LennardJones(1.0, 1.0, 2.5, truncation="shift_force"),
                      VelocityVerlet(timestep, units="lj"), units="lj", skin=0.3,
                      neighbor_backend="cell", **kwargs)


def test_healthy_runs_do_not_trip():
    simulation(crystals(3)).run(300)
    still = simulation(crystals(1, rattle=0.0))  # a perfect crystal at rest: 0 K, no forces
    still.state.velocities.zero_()
    still.run(50)


def test_atoms_inside_the_core_are_named_before_anything_is_written(tmp_path):
    systems = crystals(2)
    systems[1].positions[5] = systems[1].positions[2] + [0.4, 0.0, 0.0]  # 0.4 σ: u ~ 10⁵ ε
    sim = simulation(systems, reporters=[CheckpointWriter(tmp_path / "c.pt", 10)])
    with pytest.raises(SimulationError, match=r"^step 0, system 1: atoms 2 and 5 are 0\.4 σ "
                                              r"apart, inside the potential's core"):
        sim.run(10)
    assert not (tmp_path / "c.pt").exists()


def test_a_force_that_would_throw_an_atom_names_it():
    sim = simulation(crystals(2), timestep=0.004)
    sim.run(10)
    sim.integrator.dt_atom.mul_(200)  # the same forces now push atoms 40,000× as far
    with pytest.raises(SimulationError, match=r"^step 10, system \d+, atom \d+: (its force "
                                              r"would move it|lost)"):
        sim.check_health()


def test_an_energy_jump_is_judged_on_the_systems_own_scale():
    """Velocities of system 1 scaled by 3 between two checks: its conserved energy jumps by
    8 KE ≈ 4 N_f k_B T, far beyond 10 k_B T √N_f; system 0 is untouched."""
    sim = simulation(crystals(2))
    sim.run(10)
    sim.state.velocities[sim.state.system_idx == 1] *= 3
    with pytest.raises(SimulationError, match=r"^step 10, system 1: conserved energy jumped "
                                              r"by .* since the last check \(limit .*√N_f\)"):
        sim.check_health()


def test_checkpoints_keep_the_last_healthy_state(tmp_path):
    sim = simulation(crystals(1), reporters=[CheckpointWriter(tmp_path / "c.pt", 10)])
    sim.run(20)
    sim.state.positions[3, 0] = float("nan")
    with pytest.raises(SimulationError, match=r"system 0, atom 3: NaN or infinite"):
        sim.run(10)
    saved = torch.load(tmp_path / "c.pt", weights_only=True)
    assert saved["step"] == 20 and torch.isfinite(saved["state"]["positions"]).all()
