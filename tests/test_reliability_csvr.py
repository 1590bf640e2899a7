"""CSVR's coupling time: the kinetic-energy autocorrelation decays as exp(−t/τ).

With no forces, velocity Verlet leaves the kinetic energy K unchanged, so K moves only by the
thermostat. Bussi, Donadio and Parrinello's process (J. Chem. Phys. 126, 014101, 2007) has
E[K(t + s) | K(t)] = K̄ + (K(t) − K̄) e^{−s/τ}, so the autocorrelation of K is exactly
exp(−t/τ) at every lag, whatever the splitting into half steps. The systems: an ideal gas of
heavy atoms (m = 10⁴) on an fcc lattice of nearest-neighbour distance 2.1 σ with a
Lennard-Jones cutoff of 1 σ, so that no pair is ever within the cutoff (the forces are zero at
every step: asserted); two groups of systems with τ = 5 dt and 20 dt in one batch
(per-system τ).

Estimate: the least-squares slope of ln ρ(k) against t = k·dt for lags up to τ; its spread
over eight independent sub-batches gives the statistical error (measured with seeds 4–8:
0.9–1.2 % of τ for τ = 5 dt, 1.3–2.8 % for 20 dt; fitted τ within 3.2 % of the set one; over
ten other seeds τ = 5 dt came out 1.003 ± 0.004 τ). A wrong coupling (e^{−dt/τ} per half step,
i.e. τ/2; or e^{−dt/4τ}, i.e. 2τ) is off by a factor 2.
"""

import numpy as np
import torch
from ase.build import bulk

from hayabusa import State
from hayabusa.md import CSVR, Reporter, Simulation, maxwell_boltzmann
from hayabusa.potentials import LennardJones

DT = 0.005
TAUS = (5 * DT, 20 * DT)  # two groups of systems
PER_GROUP = 128
STEPS = 2000


class KineticEnergy(Reporter):
    """K [S] and the largest force of every step."""

    interval = 1

    def __init__(self):
        self.values, self.max_force = [], 0.0

    def report(self, sim) -> None:
        self.values.append(sim.kinetic_energy().clone())
        self.max_force = max(self.max_force, float(sim.result.forces.abs().max()))


def fitted_tau(ke: np.ndarray, tau: float) -> float:
    """τ from ρ(k) = exp(−k·dt/τ), lags 1 … τ/dt, of [steps, systems] series (centred on
    their common mean: each series' own mean would bias ρ down by ~2τ/duration)."""
    x = ke - ke.mean()
    lags = np.arange(1, round(tau / DT) + 1)
    rho = np.array([(x[:-k] * x[k:]).mean() / (x * x).mean() for k in lags])
    t = lags * DT
    return float(-(t * t).sum() / (t * np.log(rho)).sum())


def test_csvr_kinetic_energy_decorrelates_in_tau():
    atoms = bulk("Ar", "fcc", a=3.0, cubic=True)  # 4 atoms
    atoms.set_masses(np.full(len(atoms), 1e4))
    n_systems = 2 * PER_GROUP
    state = State.from_atoms([atoms] * n_systems, units="lj")
    maxwell_boltzmann(state, 1.0, units="lj", seed=3)
    tau = torch.tensor([TAUS[0]] * PER_GROUP + [TAUS[1]] * PER_GROUP, dtype=torch.float64)
    sampler = KineticEnergy()
    Simulation(state, LennardJones(1.0, 1.0, 1.0), CSVR(DT, 1.0, tau, units="lj", seed=4),
               units="lj", reporters=[sampler]).run(STEPS)
    assert sampler.max_force == 0.0  # an ideal gas: K changes only by the thermostat
    ke = torch.stack(sampler.values).numpy()[STEPS // 10:]  # after 10 τ (the longer τ)
    for g, tau_set in enumerate(TAUS):
        group = ke[:, g * PER_GROUP:(g + 1) * PER_GROUP]
        tau_fit = fitted_tau(group, tau_set)
        blocks = [fitted_tau(b, tau_set) for b in np.split(group, 8, axis=1)]
        error = np.std(blocks, ddof=1) / np.sqrt(len(blocks))
        print(f"τ = {tau_set:g}: fitted {tau_fit:.4g} ± {error:.2g}")
        assert abs(tau_fit / tau_set - 1) < 0.1
        assert error < 0.04 * tau_set  # the statistical error: at most half the tolerance
