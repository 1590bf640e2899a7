"""MD loop: NVE energy conservation, agreement with ASE, batching, restart, blow-ups, FIRE."""

import re

import ase.units
import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLJ
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet as AseVelocityVerlet

from hayabusa import SimulationError, State
from hayabusa.md import (
    CSVR,
    FIRE,
    CheckpointWriter,
    Langevin,
    NoseHooverChain,
    Simulation,
    ThermoLog,
    VelocityVerlet,
    kinetic_energy,
    maxwell_boltzmann,
)
from hayabusa.md.trajectory import H5MDWriter, read_h5md
from hayabusa.potentials import LennardJones, kob_andersen
from hayabusa.units import LJ

RHO = 0.8442


def lj_crystal(repeat=3, rattle=0.05, seed=0, density=RHO):
    atoms = bulk("Ar", "fcc", a=(4 / density) ** (1 / 3), cubic=True).repeat(repeat)
    atoms.set_masses(np.ones(len(atoms)))
    atoms.rattle(rattle, seed=seed)
    return atoms


def lj_shift_force():
    return LennardJones(1.0, 1.0, 2.5, truncation="shift_force")


class Recorder:
    """Collects sim.thermo() rows every ``interval`` steps."""


    def __init__(self, interval):
        self.interval = interval
        self.rows = []

    def start(self, sim):
        pass

    def finish(self, sim):
        pass

    def report(self, sim):
        self.rows.append({k: v.clone() for k, v in sim.thermo().items()})

    def series(self, key):
        return torch.stack([r[key] for r in self.rows]).numpy()


def test_nve_energy_drift_lj_liquid():
    """Float64, shifted-force LJ liquid, dt=0.005: |ΔE|/N < 1e-4 ε over 10⁴ steps."""
    state = State.from_atoms(lj_crystal(), units="lj")
    maxwell_boltzmann(state, 1.4, units="lj", seed=1)
    sim = Simulation(state, lj_shift_force(), VelocityVerlet(0.005, units="lj"), units="lj")
    sim.run(1000)  # melt the crystal
    rec = Recorder(10)
    sim.reporters = [rec]
    sim.run(10_000)
    e = rec.series("etotal")[:, 0] / state.n_atoms
    assert rec.series("temp")[:, 0].mean() > 0.5  # a liquid, not a frozen crystal
    drift = abs(e[-50:].mean() - e[:50].mean())  # averages over 500 steps at both ends
    assert drift < 1e-4
    assert np.abs(e - e[0]).max() < 2e-3  # fluctuations of velocity Verlet at this dt


def test_agrees_with_ase_velocity_verlet():
    """Same Ar system integrated by ASE and by hayabusa: positions agree to 1e-9 Å."""
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=3)
    rng = np.random.default_rng(4)
    sigma = np.sqrt(ase.units.kB * 60 / atoms.get_masses())[:, None]  # 60 K, ASE units
    atoms.set_momenta(atoms.get_masses()[:, None] * sigma * rng.normal(size=(len(atoms), 3)))
    Stationary(atoms)
    eps, sigma, rc = 0.0104, 3.40, 8.0
    state = State.from_atoms(atoms)
    sim = Simulation(state, LennardJones(eps, sigma, rc, truncation="shift"),
                     VelocityVerlet(2.0, remove_com=False), skin=0.5)
    sim.run(100)
    ase_atoms = atoms.copy()
    ase_atoms.calc = AseLJ(epsilon=eps, sigma=sigma, rc=rc)
    AseVelocityVerlet(ase_atoms, timestep=2.0 * ase.units.fs).run(100)
    diff = np.abs(state.positions.numpy() - ase_atoms.positions).max()
    assert diff < 1e-9
    assert np.abs(state.positions.numpy() - atoms.positions).max() > 0.05  # atoms did move


def mixed_batch():
    """Three different systems: LJ liquid start, a KA-like dense box, a triclinic crystal."""
    a = lj_crystal(repeat=2, seed=1)
    b = lj_crystal(repeat=3, seed=2, density=0.9)
    c = lj_crystal(repeat=2, seed=3)
    c.set_cell(c.cell.array @ np.array([[1, 0, 0], [0.3, 1, 0], [0.1, 0.2, 1]]),
               scale_atoms=True)
    return [a, b, c]


@pytest.mark.parametrize("make", [
    lambda temperature: VelocityVerlet(0.004, units="lj"),
    lambda temperature: NoseHooverChain(0.004, temperature, tau=0.2, units="lj"),
])
def test_batch_evolves_as_separate_systems(make):
    systems = mixed_batch()
    batch = State.from_atoms(systems, units="lj")
    targets = [1.0, 1.2, 0.9]
    maxwell_boltzmann(batch, targets, units="lj", seed=5)
    Simulation(batch, lj_shift_force(), make(targets), units="lj").run(200)
    start = 0
    for s, atoms in enumerate(systems):
        single = State.from_atoms(atoms, units="lj")
        n = single.n_atoms
        single.velocities = batch_velocities_at_start(systems, s)
        Simulation(single, lj_shift_force(), make(targets[s]), units="lj").run(200)
        assert torch.allclose(single.positions, batch.positions[start:start + n],
                              atol=1e-10, rtol=0)
        start += n


def batch_velocities_at_start(systems, s):
    batch = State.from_atoms(systems, units="lj")
    maxwell_boltzmann(batch, [1.0, 1.2, 0.9], units="lj", seed=5)
    return batch.velocities[batch.system_idx == s].clone()


INTEGRATORS = {
    "nve": lambda: VelocityVerlet(0.005, units="lj"),
    "langevin": lambda: Langevin(0.005, 0.8, friction=1.0, units="lj", seed=11),
    "nose_hoover": lambda: NoseHooverChain(0.005, 0.8, tau=0.1, units="lj"),
    "csvr": lambda: CSVR(0.005, 0.8, tau=0.1, units="lj", seed=12),
}


def ka_state(n=250, seed=0):
    """A small Kob–Andersen liquid (80:20) on a jittered simple-cubic start at ρ=1.2."""
    rng = np.random.default_rng(seed)
    side = round(n ** (1 / 3))
    n = side**3
    box = (n / 1.2) ** (1 / 3)
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    positions = (grid + 0.5 + rng.normal(scale=0.05, size=grid.shape)) * box / side
    types = np.zeros(n, dtype=int)
    types[rng.permutation(n)[: n // 5]] = 1
    from ase import Atoms

    atoms = Atoms(numbers=types + 1, positions=positions, cell=[box] * 3, pbc=True)
    atoms.set_masses(np.ones(n))
    return State.from_atoms(atoms, units="lj")


@pytest.mark.parametrize("name", list(INTEGRATORS))
def test_restart_is_bit_identical(tmp_path, name):
    """2N steps straight == N steps + checkpoint + restart + N steps, bit for bit on CPU."""
    def fresh():
        state = ka_state()
        maxwell_boltzmann(state, 0.8, units="lj", seed=3)
        return Simulation(state, kob_andersen(), INTEGRATORS[name](), units="lj",
                          check_every=3)

    straight = fresh().run(120)
    first = fresh()
    first.reporters = [CheckpointWriter(tmp_path / "ckpt.pt", interval=60)]
    first.run(60)
    second = fresh().load_checkpoint(tmp_path / "ckpt.pt")
    assert second.step == 60
    second.run(60)
    assert torch.equal(straight.state.positions, second.state.positions)
    assert torch.equal(straight.state.velocities, second.state.velocities)
    assert torch.equal(straight.result.forces, second.result.forces)
    assert torch.equal(straight.thermo()["conserved"], second.thermo()["conserved"])


def test_blow_up_stops_with_simulation_error_and_keeps_outputs(tmp_path):
    state = State.from_atoms(lj_crystal(repeat=2), units="lj")
    maxwell_boltzmann(state, 1.0, units="lj", seed=2)
    ckpt, traj = tmp_path / "ckpt.pt", tmp_path / "traj.h5"
    integrator = VelocityVerlet(0.005, units="lj")
    sim = Simulation(state, lj_shift_force(), integrator, units="lj",
                     reporters=[CheckpointWriter(ckpt, 20), H5MDWriter(traj, 10)])
    sim.run(40)
    integrator.dt_atom *= 40  # a timestep far too large: the system explodes
    with pytest.raises(SimulationError, match=r"step \d+, system 0"):
        sim.run(200)
    assert sim.step < 240
    saved = torch.load(ckpt, weights_only=True)
    assert saved["step"] <= sim.step and torch.isfinite(saved["state"]["positions"]).all()
    frames = read_h5md(traj)[0]
    assert frames["step"][0] == 0 and len(frames["step"]) >= 5
    assert np.isfinite(frames["positions"]).all()


def test_fire_relaxes_batch_to_perfect_crystals():
    crystals = [lj_crystal(repeat=2, rattle=0.0), lj_crystal(repeat=3, rattle=0.0)]
    perfect = State.from_atoms(crystals, units="lj")
    pot = LennardJones(1.0, 1.0, 2.5, truncation="shift")
    from hayabusa.neighbors import NeighborList

    e_perfect = pot(perfect, NeighborList(2.5).build(perfect)).energy
    rattled = State.from_atoms([lj_crystal(2, 0.08, seed=1), lj_crystal(3, 0.08, seed=2)],
                               units="lj")
    fire = FIRE(rattled, pot, units="lj", fmax=1e-5)
    assert fire.run(2000)
    assert (fire.max_force < 1e-5).all()
    per_atom = (fire.result.energy - e_perfect) / rattled.n_atoms_per_system
    assert torch.allclose(per_atom, torch.zeros(2, dtype=torch.float64), atol=1e-8)


def test_maxwell_boltzmann_exact_temperature_and_zero_momentum():
    state = State.from_atoms([lj_crystal(2), lj_crystal(3)], units="lj")
    maxwell_boltzmann(state, [0.5, 2.0], units="lj", seed=7)
    momentum = torch.zeros(2, 3, dtype=torch.float64).index_add_(
        0, state.system_idx, state.velocities * state.masses[:, None])
    assert torch.allclose(momentum, torch.zeros_like(momentum), atol=1e-12)
    dof = 3 * state.n_atoms_per_system.double() - 3
    t = 2 * kinetic_energy(state, LJ) / dof
    assert torch.allclose(t, torch.tensor([0.5, 2.0], dtype=torch.float64), rtol=1e-12)
    again = State.from_atoms([lj_crystal(2), lj_crystal(3)], units="lj")
    maxwell_boltzmann(again, [0.5, 2.0], units="lj", seed=7)
    assert torch.equal(again.velocities, state.velocities)
    maxwell_boltzmann(again, [0.5, 2.0], units="lj", seed=8)
    assert not torch.equal(again.velocities, state.velocities)


def test_thermo_log_is_lammps_style(tmp_path):
    import io

    stream = io.StringIO()
    state = State.from_atoms([lj_crystal(2), lj_crystal(2, seed=4)], units="lj")
    maxwell_boltzmann(state, 1.0, units="lj", seed=1)
    log = ThermoLog(5, path=tmp_path / "log.hayabusa", stream=stream)
    sim = Simulation(state, lj_shift_force(), NoseHooverChain(0.005, 1.0, 0.1, units="lj"),
                     units="lj", reporters=[log])
    sim.run(10)
    text = stream.getvalue()
    assert text == (tmp_path / "log.hayabusa").read_text()
    lines = text.splitlines()
    header = next(ln for ln in lines if ln.split()[:2] == ["Step", "Sys"])
    assert header.split() == ["Step", "Sys", "Temp", "PotEng", "KinEng", "TotEng", "Press",
                              "Econs"]
    rows = [ln.split() for ln in lines if re.match(r"^\s+\d+\s+\d\s", ln)]
    assert [(r[0], r[1]) for r in rows] == [(s, y) for s in ("0", "5", "10") for y in "01"]
    assert float(rows[0][2]) == pytest.approx(1.0, rel=1e-9)
    assert re.search(r"^Loop time of [\d.e+-]+ on 1 procs for 10 steps with 64 atoms$", text,
                     re.M)
    assert re.search(r"^Performance: [\d.]+ tau/day, [\d.]+ timesteps/s, "
                     r"[\d.]+ katom-step/s$", text, re.M)


def test_pressure_of_a_dilute_gas_is_ideal_in_gpa():
    """Atoms far beyond the cutoff: P = N k_B T / V, reported in GPa for metal units."""
    atoms = bulk("Ar", "sc", a=20.0).repeat(3)
    state = State.from_atoms(atoms)
    maxwell_boltzmann(state, 300.0, seed=0, remove_com=False)
    sim = Simulation(state, LennardJones(0.0104, 3.4, 8.0), VelocityVerlet(1.0, remove_com=False),
                     reporters=[ThermoLog(1, stream=None)])
    sim.run(0)
    ideal = len(atoms) * ase.units.kB * 300.0 / atoms.get_volume() / ase.units.GPa
    assert float(sim.thermo()["press"][0]) == pytest.approx(ideal, rel=1e-9)


def test_step_blocks_rebuild_the_list_only_when_needed():
    """With a wide skin most blocks reuse the list: a build only when the displacement read at
    the end of a block says it would go stale during the next one."""
    state = ka_state(n=125, seed=4)
    maxwell_boltzmann(state, 0.5, units="lj", seed=3)
    sim = Simulation(state, kob_andersen(), INTEGRATORS["nve"](), units="lj", skin=1.0,
                     block_steps=5, health_every=100)
    builds = sim.forces.neighbors.n_builds
    sim.run(200)
    assert sim.blocks.replays == 40 and sim.blocks.undone == 0
    # the fastest atoms move ~0.19 σ per block here, so about every other block rebuilds
    assert 1 <= sim.forces.neighbors.n_builds - builds <= sim.blocks.replays // 2


@pytest.mark.parametrize("name", ["nve", "nose_hoover", "langevin"])
@pytest.mark.parametrize("skin", [0.3, 0.05])
def test_step_blocks_follow_the_eager_loop(name, skin):
    """Blocks without host syncs give the eager trajectory; a block whose list went stale
    (small skin) is undone and run again on a fresh list (or step by step), so no pair is
    ever missed."""
    def run(block_steps):
        state = ka_state(n=125, seed=4)
        maxwell_boltzmann(state, 1.0, units="lj", seed=3)
        sim = Simulation(state, kob_andersen(), INTEGRATORS[name](), units="lj", skin=skin,
                         block_steps=block_steps, health_every=20)
        sim.run(200)
        return sim

    eager, blocked = run(0), run(10)
    assert blocked.blocks.replays > 0
    if skin == 0.05:
        assert blocked.blocks.undone > 0
    if (name, skin) == ("nose_hoover", 0.3):  # some undone blocks reran as a whole (replayed)
        assert blocked.blocks.replays > 200 // 10
    assert (eager.state.positions - blocked.state.positions).abs().max() < 1e-9
    assert torch.allclose(eager.thermo()["conserved"], blocked.thermo()["conserved"],
                          rtol=1e-10)
