"""Integrators that compose, counter-based random numbers and snapshots.

- NVE core + CSVR thermostat part reproduces, bit for bit, the monolithic CSVR step of before
  (written out here as it was: rescale, velocity Verlet, rescale) on the same noise.
- Philox4x32-10 matches the published known-answer vectors; a system draws the same numbers
  batched or alone (keyed by its seed), so stochastic runs are batch = single.
- A temperature schedule is followed (annealing).
- Snapshot.restore(mask) rewinds exactly the masked systems, everything else runs on.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from hayabusa import State
from hayabusa.md import (
    CSVR,
    CSVRThermostat,
    Integrator,
    Langevin,
    NoseHooverChain,
    Simulation,
    TemperatureSchedule,
    VelocityVerlet,
    maxwell_boltzmann,
)
from hayabusa.md.random import draw_normals, philox4x32
from hayabusa.md.velocities import kinetic_energy
from hayabusa.potentials import LennardJones
from hayabusa.state import sum_over_systems
from hayabusa.units import get_units

RHO, DT = 0.8442, 0.005


def liquid(n_replicas: int = 2, seed: int = 0) -> State:
    systems = []
    for r in range(n_replicas):
        atoms = bulk("Ar", "fcc", a=(4 / RHO) ** (1 / 3), cubic=True).repeat(2)
        atoms.set_masses(np.ones(len(atoms)))
        atoms.rattle(0.05, seed=seed + r)
        systems.append(atoms)
    state = State.from_atoms(systems, units="lj")
    maxwell_boltzmann(state, 1.2, units="lj", seed=seed + 7)
    return state


def lj() -> LennardJones:
    return LennardJones(1.0, 1.0, 2.5, truncation="shift_force")


def simulation(state, integrator, **kwargs) -> Simulation:
    return Simulation(state, lj(), integrator, units="lj", neighbor_backend="cell", **kwargs)


# ------------------------------------------------------------------ composition
class MonolithicCSVR:
    """The CSVR integrator as one class, as hayabusa had it before thermostats became parts
    (rescale by dt/2, velocity Verlet, rescale by dt/2), drawing the same counter-based
    normals."""

    def __init__(self, state, dt, temperature, tau, seed):
        self.units = get_units("lj")
        n = state.n_atoms_per_system.to(torch.float64)
        self.dof = 3 * n - 3
        self.dt = torch.full((state.n_systems,), dt, dtype=torch.float64)
        self.c = torch.exp(-0.5 * self.dt / tau)
        self.kT = torch.full((state.n_systems,), temperature, dtype=torch.float64)
        self.seeds = (seed << 32) + torch.arange(state.n_systems)
        self.draws = torch.zeros(state.n_systems, dtype=torch.int64)
        first = torch.cumsum(state.n_atoms_per_system, 0) - state.n_atoms_per_system
        self.local = torch.arange(state.n_atoms) - first[state.system_idx]
        comp = 3 * self.local[:, None] + torch.arange(3)
        self.chi2_mask = (comp < (self.dof[state.system_idx, None] - 1)).to(torch.float64)
        self.kick_scale = self.dt[state.system_idx, None] / state.masses[:, None]

    def rescale(self, state):
        ke = kinetic_energy(state, self.units)
        dof = self.dof.clamp(min=1)
        ke_target = 0.5 * dof * self.kT
        normals, r1 = draw_normals(self.seeds, self.draws, state.system_idx, self.local, 1)
        self.draws += 1
        chi2 = sum_over_systems((normals * normals * self.chi2_mask).sum(-1), state.system_idx,
                                state.n_systems)
        c = self.c
        ke_new = (c * ke + (1 - c) * ke_target * (r1 * r1 + chi2) / dof
                  + 2 * r1 * torch.sqrt(c * (1 - c) * ke * ke_target / dof))
        alpha = torch.sqrt(ke_new / ke.clamp(min=1e-300))
        alpha = torch.where(ke > 0, alpha, torch.ones_like(alpha))
        sign = torch.sign(r1 + torch.sqrt(c * ke * dof / ((1 - c) * ke_target.clamp(min=1e-300))))
        alpha = alpha * torch.where(sign == 0, torch.ones_like(sign), sign)
        state.velocities *= alpha.to(state.dtype)[state.system_idx, None]

    def step(self, state, forces, compute):
        self.rescale(state)
        state.velocities.addcmul_(self.kick_scale, forces, value=0.5)
        state.positions.addcmul_(self.dt[state.system_idx, None], state.velocities)
        forces = compute(state)
        state.velocities.addcmul_(self.kick_scale, forces, value=0.5)
        self.rescale(state)
        return forces


def test_nve_core_plus_csvr_part_is_the_csvr_integrator_of_before_bit_for_bit():
    composed_state, monolithic_state = liquid(), liquid()
    sim = simulation(composed_state, Integrator(DT, CSVRThermostat(1.0, 0.1, seed=3), "lj"))
    sim.run(60)
    old = MonolithicCSVR(monolithic_state, DT, 1.0, 0.1, seed=3)
    from hayabusa.neighbors import NeighborList

    nl = NeighborList(2.5, 0.3)
    potential = lj()

    def compute(state):
        nl.update(state)
        return potential(state, nl).forces

    from hayabusa.md.velocities import remove_com_velocity

    remove_com_velocity(monolithic_state)  # as Integrator.init does
    forces = compute(monolithic_state)
    for _ in range(60):
        forces = old.step(monolithic_state, forces, compute)
    assert torch.equal(composed_state.positions, monolithic_state.positions)
    assert torch.equal(composed_state.velocities, monolithic_state.velocities)
    # and the factory is the composition
    assert CSVR(DT, 1.0, 0.1, units="lj", seed=3).thermostat.name == "csvr"


# --------------------------------------------------------------- random numbers
def test_philox_known_answers():
    """Random123's known-answer vectors for Philox4x32-10."""
    def words(counter, key):
        t = [torch.tensor([v], dtype=torch.int64) for v in (*counter, *key)]
        return [int(w) for w in philox4x32(tuple(t[:4]), tuple(t[4:]))]

    assert words((0, 0, 0, 0), (0, 0)) == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    m = 0xFFFFFFFF
    assert words((m, m, m, m), (m, m)) == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    assert words((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
                 (0xA4093822, 0x299F31D0)) == [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


def test_normals_are_standard_and_depend_on_seed_and_draw_only():
    seeds = torch.tensor([11, 12])
    draws = torch.tensor([0, 5])
    system_idx = torch.arange(2).repeat_interleave(40000)
    local = torch.arange(40000).repeat(2)
    atoms, systems = draw_normals(seeds, draws, system_idx, local, 0)
    x = atoms.flatten()
    assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1) < 0.01
    assert abs(float((x**4).mean()) - 3) < 0.05
    alone, own = draw_normals(seeds[1:], draws[1:], torch.zeros(40000, dtype=torch.int64),
                              torch.arange(40000), 0)
    assert torch.equal(alone, atoms[40000:]) and torch.equal(own, systems[1:])
    other, _ = draw_normals(seeds, draws + 1, system_idx, local, 0)
    assert not torch.equal(other, atoms)


@pytest.mark.parametrize("make", [
    lambda seed: Langevin(DT, 1.0, 2.0, units="lj", seed=seed),
    lambda seed: CSVR(DT, 1.0, 0.1, units="lj", seed=seed)])
def test_a_system_runs_the_same_batched_or_alone(make):
    """System s of a batch draws with seed·2³² + s; alone with that seed it follows the same
    trajectory (to the summation order of the per-system sums)."""
    batch = liquid(2, seed=4)
    second = State.from_atoms(batch.to_atoms("lj")[1], units="lj")
    simulation(batch, make(5)).run(40)
    simulation(second, make([(5 << 32) + 1])).run(40)
    assert torch.allclose(second.positions, batch.positions[32:], atol=1e-10, rtol=0)


def test_langevin_follows_a_temperature_schedule():
    """A ramp 2.0 → 0.5 over 300 steps, then 0.5: with strong friction the kinetic
    temperature follows it (mean over the last 100 steps near 0.5; at the ramp's middle,
    near 1.25)."""
    state = liquid(4, seed=9)
    schedule = TemperatureSchedule([0, 300], [2.0, 0.5])
    integrator = Langevin(DT, schedule, 20.0, units="lj", seed=1)
    sim = simulation(state, integrator)
    temps = []
    for _ in range(40):
        sim.run(10)
        temps.append(float(sim.thermo()["temp"].mean()))
    assert abs(np.mean(temps[12:18]) - 1.25) < 0.15
    assert abs(np.mean(temps[-10:]) - 0.5) < 0.08
    assert int(integrator.steps) == 400


# -------------------------------------------------------------------- snapshots
@pytest.mark.parametrize("make", [
    lambda: NoseHooverChain(DT, [1.0, 1.5, 0.8], 0.1, units="lj"),
    lambda: Langevin(DT, [1.0, 1.5, 0.8], 1.0, units="lj", seed=2)])
def test_masked_restore_rewinds_exactly_the_masked_systems(make):
    state = liquid(3, seed=2)
    sim = simulation(state, make())
    sim.run(5)
    snap = sim.snapshot().take()
    at_snapshot = {k: v.clone() for k, v in snap.saved["atom"].items()}
    variables = {k: v.clone() for k, v in sim.integrator.variables().items()}
    sim.run(20)
    after = state.positions.clone()
    mask = torch.tensor([True, False, True])
    snap.restore(mask)
    rows = mask[state.system_idx]
    assert torch.equal(state.positions[rows], at_snapshot["positions"][rows])
    assert torch.equal(state.velocities[rows], at_snapshot["velocities"][rows])
    assert torch.equal(sim.result.forces[rows], at_snapshot["forces"][rows])
    assert torch.equal(state.positions[~rows], after[~rows])
    for name, value in sim.integrator.variables().items():
        if value.ndim:
            assert torch.equal(value[mask], variables[name][mask]), name
    # the restored systems run on as from the snapshot: a full restore and the same steps
    # give the same state as the masked one did for them
    sim.run(10)
    masked = state.positions.clone()
    snap.restore()
    sim.run(10)
    assert torch.equal(state.positions[rows], masked[rows])


def test_blocks_use_snapshots_and_stay_on_the_eager_trajectory():
    """CPU blocks (no graph): a Langevin run in blocks of 7 follows the eager run (to the
    summation order of lists built at other steps) — undone blocks rewind the random-number
    counters too (had they not, the noise, and the trajectory, would differ at O(1))."""
    def run(block_steps):
        state = liquid(2, seed=3)
        sim = Simulation(state, lj(), Langevin(DT, 1.0, 1.0, units="lj", seed=4), units="lj",
                         neighbor_backend="cell", skin=0.1, block_steps=block_steps,
                         health_every=21)
        sim.run(63)
        return sim

    eager, blocked = run(0), run(7)
    assert blocked.blocks.replays >= 9 and blocked.blocks.undone >= 1
    assert (eager.state.positions - blocked.state.positions).abs().max() < 1e-9
    assert (eager.state.velocities - blocked.state.velocities).abs().max() < 1e-9
    assert torch.equal(eager.integrator.thermostat.draws, blocked.integrator.thermostat.draws)


def test_velocity_verlet_factory_is_the_bare_core():
    integrator = VelocityVerlet(DT, units="lj")
    assert integrator.thermostat is None and integrator.name == "nve"
