"""Thermostats sample the canonical ensemble: a statistical specification.

Batches of small Lennard-Jones liquids (32 atoms, ρ* = 0.8442, shifted-force cutoff 2.5 σ,
reduced units, m = 1, dt = 0.005 τ); in each batch half of the replicas have the target
T = 1.0 and half T = 1.5 (per-system targets). In the canonical ensemble the kinetic energy
of a system with N_f = 3N − 3 degrees of freedom follows Gamma(shape = N_f/2, scale = k_B T)
whatever the potential, so for Langevin, Nosé–Hoover chain and CSVR, in each temperature group:

* a Kolmogorov–Smirnov test against that law accepts (p > 0.001) the kinetic energies sampled
  at intervals longer than their autocorrelation time;
* ⟨T⟩ is within 1 % of the target;
* the conserved quantity (energy plus the thermostat's account) stays bounded.

Negative controls show that the test has power: the same samples reject Gamma at 1.1 T, and
plain NVE of the same systems (narrower, microcanonical fluctuations) is rejected too.
Measured values are printed (pytest shows them when a test fails; ``-s`` always).
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np
import pytest
import torch
from ase.build import bulk
from scipy import stats

from hayabusa import InputError, State
from hayabusa.md import (
    CSVR,
    Langevin,
    NoseHooverChain,
    Reporter,
    Simulation,
    VelocityVerlet,
    maxwell_boltzmann,
)
from hayabusa.potentials import LennardJones

RHO = 0.8442
DT = 0.005
N_ATOMS = 32  # 2×2×2 cubic fcc cells
N_F = 3 * N_ATOMS - 3  # centre-of-mass momentum removed
N_REPLICAS = 16
T_LOW, T_HIGH = 1.0, 1.5  # both well inside the fluid at ρ* = 0.8442
TARGETS = torch.tensor([T_LOW] * 8 + [T_HIGH] * 8, dtype=torch.float64)
GROUPS = {T_LOW: slice(0, 8), T_HIGH: slice(8, 16)}
# Any neighbor backend gives the same forces; vesin is the fastest on the CPU.
BACKEND = "vesin" if importlib.util.find_spec("vesin") else "cell"


def lj() -> LennardJones:
    return LennardJones(1.0, 1.0, 2.5, truncation="shift_force")


def crystals(n_replicas: int, seed: int, cells: int = 2) -> State:
    """``n_replicas`` fcc crystals of 4·cells³ atoms at ρ*, each rattled differently, m = 1."""
    systems = []
    for r in range(n_replicas):
        atoms = bulk("Ar", "fcc", a=(4 / RHO) ** (1 / 3), cubic=True).repeat(cells)
        atoms.set_masses(np.ones(len(atoms)))
        atoms.rattle(0.05, seed=seed + r)
        systems.append(atoms)
    return State.from_atoms(systems, units="lj")


def simulation(state: State, integrator, reporters=()) -> Simulation:
    return Simulation(state, lj(), integrator, units="lj", neighbor_backend=BACKEND,
                      reporters=reporters)


@functools.lru_cache(maxsize=1)
def _liquid() -> State:
    state = crystals(N_REPLICAS, seed=0)
    maxwell_boltzmann(state, 3.0, units="lj", seed=1)
    # Melt at T = 3 (the small crystals would survive a while at the targets), then let the
    # liquids relax at their targets; without this the latent heat biases ⟨T⟩ by ~1 %.
    simulation(state, Langevin(DT, 3.0, friction=5.0, units="lj", seed=2)).run(400)
    simulation(state, Langevin(DT, TARGETS, friction=5.0, units="lj", seed=3)).run(600)
    return state


def liquid() -> State:
    """The batch of 16 liquids equilibrated at TARGETS (computed once per process)."""
    return _liquid().clone()


class Sampler(Reporter):
    """Records kinetic energy, total energy and the conserved quantity every ``interval``
    steps (with ``thermo``, through ``sim.thermo()``; else directly, without the stress)."""

    def __init__(self, interval: int, thermo: bool = False):
        self.interval = interval
        self.thermo = thermo
        self.ke, self.etotal, self.conserved = [], [], []

    def report(self, sim) -> None:
        if self.thermo:
            row = sim.thermo()
            ke, etotal, conserved = row["ke"], row["etotal"], row["conserved"]
        else:
            ke = sim.kinetic_energy()
            etotal = sim.result.energy + ke
            conserved = sim.integrator.conserved(sim.state, sim.result, ke)
        self.ke.append(ke.clone())
        self.etotal.append(etotal.clone())
        self.conserved.append(conserved.clone())

    def series(self, name: str) -> np.ndarray:
        """[records, systems]."""
        return torch.stack(getattr(self, name)).numpy()


def ks_pvalue(ke: np.ndarray, kT: float) -> float:
    """KS test of kinetic energies against the canonical Gamma(N_f/2, kT)."""
    return float(stats.kstest(ke.ravel(), stats.gamma(N_F / 2, scale=kT).cdf).pvalue)


def autocorrelation(series: np.ndarray, lag: int) -> float:
    """Autocorrelation at ``lag`` records of [records, systems] series (each system centred)."""
    x = series - series.mean(0)
    return float((x[:-lag] * x[lag:]).mean() / (x * x).mean())


def drift_and_excursion(series: np.ndarray, n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """Per system and atom: |mean over the last tenth − mean over the first tenth| (the
    bounded O(dt²) fluctuations of the integrator average out) and max |value − first|."""
    tenth = max(1, len(series) // 10)
    drift = np.abs(series[-tenth:].mean(0) - series[:tenth].mean(0)) / n_atoms
    excursion = np.abs(series - series[0]).max(0) / n_atoms
    return drift, excursion


# --------------------------------------------------------------------------------------------
# Canonical kinetic energy, ⟨T⟩ and the conserved quantity; negative controls
# --------------------------------------------------------------------------------------------

RECORD_EVERY = 5  # steps between records; ⟨T⟩ averages them all
EQUILIBRATION = 200
PRODUCTION = 2400
# name: (integrator, steps between KS samples, conserved-quantity tolerances per atom:
# (drift, excursion) as defined by drift_and_excursion).
# Strong coupling keeps the kinetic-energy autocorrelation short. The sampling interval is
# where the measured autocorrelation function has decayed: |ACF| ≤ 0.04 from 25 steps on for
# Langevin and CSVR; the Nosé–Hoover chain rings with a period of ~45 steps, |ACF| ≤ 0.08 at
# multiples of 35 steps. The test checks the ACF at the interval, too.
# Conserved quantities, measured over this run (16 systems): Langevin drift/N ≤ 0.018,
# excursion/N ≤ 0.021; CSVR 0.008 and 0.012; Nosé–Hoover chain (τ = 0.05 = 10 dt) 0.005 and
# 0.009. For Langevin and CSVR the account random-walks by the integrator's O(dt²) energy
# error at each exchange with the bath (halving dt made it 4–6× smaller), so the tolerances
# are ~3× the measured values; the energy without the account wanders by ≥ 0.7 ε per atom.
THERMOSTATS = {
    "langevin": (lambda: Langevin(DT, TARGETS, friction=20.0, units="lj", seed=7), 25,
                 (0.05, 0.06)),
    "nose_hoover_chain": (lambda: NoseHooverChain(DT, TARGETS, tau=0.05, units="lj",
                                                  chain_length=3), 35, (0.015, 0.025)),
    "csvr": (lambda: CSVR(DT, TARGETS, tau=0.02, units="lj", seed=7), 25, (0.025, 0.035)),
}


@pytest.mark.parametrize("name", list(THERMOSTATS))
def test_thermostat_samples_the_canonical_ensemble(name):
    make, sample_every, (drift_tol, excursion_tol) = THERMOSTATS[name]
    stride = sample_every // RECORD_EVERY
    sampler = Sampler(RECORD_EVERY)
    sim = simulation(liquid(), make())
    sim.run(EQUILIBRATION)
    sim.reporters = [sampler]
    sim.run(PRODUCTION)
    ke = sampler.series("ke")  # [records, systems]
    for t, group in GROUPS.items():
        samples = ke[::stride, group]
        acf = autocorrelation(ke[:, group], stride)
        p = ks_pvalue(samples, t)
        p_wrong = ks_pvalue(samples, 1.1 * t)
        t_mean = 2 * ke[:, group].mean() / N_F
        print(f"{name} T={t}: {samples.size} KS samples (ACF {acf:+.3f}), p={p:.3g}, "
              f"p(1.1 T)={p_wrong:.3g}; <T>/T - 1 = {t_mean / t - 1:+.4f}")
        assert abs(acf) < 0.1, f"{name}: samples {sample_every} steps apart are correlated"
        assert p > 1e-3, f"{name}, T={t}: kinetic energy not canonical (KS p={p:.3g})"
        assert p_wrong < 1e-6, f"{name}, T={t}: the KS test misses 1.1 T (p={p_wrong:.3g})"
        assert abs(t_mean / t - 1) < 0.01, f"{name}: <T> = {t_mean:.4f}, target {t}"

    conserved, etotal = sampler.series("conserved"), sampler.series("etotal")
    drift, excursion = drift_and_excursion(conserved, N_ATOMS)
    _, e_excursion = drift_and_excursion(etotal, N_ATOMS)
    print(f"{name}: conserved drift/N ≤ {drift.max():.2g}, excursion/N ≤ {excursion.max():.2g}; "
          f"energy alone wanders ≥ {e_excursion.min():.2g}/N")
    assert drift.max() < drift_tol
    assert excursion.max() < excursion_tol
    assert e_excursion.min() > 5 * excursion_tol  # without the thermostat's account it fails
    assert torch.equal(sim.thermo()["conserved"], sampler.conserved[-1])


NVE_SAMPLE_EVERY = 15  # |ACF| ≤ 0.03 from 15 steps on


def test_kinetic_energy_of_nve_is_not_canonical():
    """Negative control: NVE copies of one liquid at one energy have microcanonical kinetic
    energy fluctuations, narrower than canonical; the KS test must see it."""
    atoms = liquid().to_atoms(units="lj")
    state = State.from_atoms([atoms[0]] * 8 + [atoms[8]] * 8, units="lj")
    maxwell_boltzmann(state, TARGETS, units="lj", seed=4)  # exact: copies share the energy
    sampler = Sampler(NVE_SAMPLE_EVERY)
    sim = simulation(state, VelocityVerlet(DT, units="lj"))
    sim.run(100)
    sim.reporters = [sampler]
    sim.run(1200)
    ke = sampler.series("ke")
    pooled = []
    for t, group in GROUPS.items():
        samples = ke[:, group]
        assert abs(autocorrelation(samples, 1)) < 0.1
        kT = 2 * samples.mean() / N_F  # the NVE temperature, so only the shape is tested
        p = ks_pvalue(samples, kT)
        var_ratio = samples.var() / (N_F / 2 * kT**2)
        print(f"NVE from T={t}: T={kT:.3f}, {samples.size} samples, KS p={p:.3g}, "
              f"variance / canonical = {var_ratio:.2f}")
        assert p < 0.01
        assert var_ratio < 0.7
        pooled.append(samples / kT)
    p_pooled = ks_pvalue(np.concatenate(pooled, axis=1), 1.0)
    print(f"NVE pooled: KS p={p_pooled:.3g}")
    assert p_pooled < 1e-4


# --------------------------------------------------------------------------------------------
# Nosé–Hoover chain: conserved quantity over a long run; chain length
# --------------------------------------------------------------------------------------------

def test_nose_hoover_chain_conserved_quantity_is_bounded():
    """Two 108-atom liquids at T = 1 and 1.5 with τ = 0.2 and 0.5, 4000 steps: the extended
    energy drifts by less than 1e-3 ε per atom and stays within 6e-3 ε per atom.

    Measured (these liquids and three others): drift/N ≤ 4.1e-4, excursion/N ≤ 2.8e-3 (velocity
    Verlet's own O(dt²) fluctuation); the energy alone wanders by ≥ 0.39 ε per atom. With 32
    atoms the per-atom wander of the integrator error is larger (drift/N up to 2.5e-3), hence
    108 atoms here."""
    state = crystals(2, seed=20, cells=3)
    n_atoms = 108
    targets = [T_LOW, T_HIGH]
    maxwell_boltzmann(state, 3.0, units="lj", seed=21)
    simulation(state, Langevin(DT, 3.0, friction=5.0, units="lj", seed=22)).run(300)  # melt
    simulation(state, Langevin(DT, targets, friction=5.0, units="lj", seed=23)).run(300)
    sampler = Sampler(20, thermo=True)
    integrator = NoseHooverChain(DT, targets, tau=[0.2, 0.5], units="lj", chain_length=3)
    simulation(state, integrator, [sampler]).run(4000)
    drift, excursion = drift_and_excursion(sampler.series("conserved"), n_atoms)
    _, e_excursion = drift_and_excursion(sampler.series("etotal"), n_atoms)
    print(f"NHC: drift/N {drift}, excursion/N {excursion}, energy excursion/N {e_excursion}")
    assert drift.max() < 1e-3
    assert excursion.max() < 6e-3
    assert e_excursion.min() > 0.1  # the chain's energy is doing the work


@pytest.mark.parametrize("chain_length", [0, -1])
def test_nose_hoover_chain_length_must_be_positive(chain_length):
    with pytest.raises(InputError, match="chain_length"):
        NoseHooverChain(DT, 1.0, 0.5, units="lj", chain_length=chain_length)


# --------------------------------------------------------------------------------------------
# Reproducibility of the stochastic thermostats
# --------------------------------------------------------------------------------------------

STOCHASTIC = {
    "langevin": lambda seed: Langevin(DT, [1.0, 1.5], friction=5.0, units="lj", seed=seed),
    "csvr": lambda seed: CSVR(DT, [1.0, 1.5], tau=0.05, units="lj", seed=seed),
}


@pytest.mark.parametrize("name", list(STOCHASTIC))
def test_same_seed_same_trajectory_other_seed_other(name):
    def run(seed):
        state = crystals(2, seed=10)
        maxwell_boltzmann(state, [1.0, 1.5], units="lj", seed=11)
        sim = simulation(state, STOCHASTIC[name](seed))
        sim.run(50)
        return state, sim.thermo()["conserved"]

    a, conserved_a = run(5)
    b, conserved_b = run(5)
    c, _ = run(6)
    assert torch.equal(a.positions, b.positions)
    assert torch.equal(a.velocities, b.velocities)
    assert torch.equal(conserved_a, conserved_b)
    assert (a.velocities - c.velocities).abs().max() > 1e-2
    assert (a.positions - c.positions).abs().max() > 1e-5


@pytest.mark.parametrize("name", list(STOCHASTIC))
def test_identical_replicas_get_independent_noise(name):
    """Two copies of one system in a batch must decorrelate (no noise shared by systems)."""
    one = crystals(1, seed=10)
    maxwell_boltzmann(one, 1.0, units="lj", seed=11)
    atoms = one.to_atoms(units="lj")[0]
    state = State.from_atoms([atoms, atoms], units="lj")
    simulation(state, STOCHASTIC[name](5)).run(50)
    first, second = state.velocities[:N_ATOMS], state.velocities[N_ATOMS:]
    assert (first - second).abs().max() > 1e-2
