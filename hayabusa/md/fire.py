"""FIRE minimizer for batched systems (Bitzek et al., PRL 97, 170201, 2006).

Each system has its own timestep, mixing factor α and convergence; converged systems stop
moving while the others go on. Converged when the largest atomic force is below ``fmax``
and, if ``energy_tol`` is given, the energy per atom changed by less than it in the last step.
Units: forces energy/length, timesteps fs (metal) or τ (lj), ``max_step`` length.
"""

from __future__ import annotations

import torch

from ..potentials import Potential
from ..state import State, sum_over_systems
from ..units import get_units
from .forces import ForceEvaluator

DEFAULTS = {  # timestep, max timestep, max step length (as ASE's FIRE for metal units)
    "metal": (1.0, 10.0, 0.2),
    "lj": (0.005, 0.05, 0.1),
}


class FIRE:
    def __init__(self, state: State, potential: Potential, units="metal", fmax: float = 0.05,
                 energy_tol: float | None = None, timestep: float | None = None,
                 max_timestep: float | None = None, max_step: float | None = None,
                 skin: float = 0.0, neighbor_backend: str = "auto", n_min: int = 5,
                 f_inc: float = 1.1, f_dec: float = 0.5,
                 alpha_start: float = 0.1, f_alpha: float = 0.99):
        self.state = state
        self.units = get_units(units)
        potential.check_state(state)
        self.forces = ForceEvaluator(potential.to(state.device), skin, neighbor_backend,
                                     state=state)
        d_dt, d_dtmax, d_step = DEFAULTS[self.units.name]
        s, dev = state.n_systems, state.device
        self.dt = torch.full((s,), timestep or d_dt, dtype=torch.float64, device=dev)
        self.dt_max = max_timestep or d_dtmax
        self.max_step = max_step or d_step
        self.fmax, self.energy_tol = fmax, energy_tol
        self.n_min, self.f_inc, self.f_dec = n_min, f_inc, f_dec
        self.alpha_start, self.f_alpha = alpha_start, f_alpha
        self.alpha = torch.full((s,), alpha_start, dtype=torch.float64, device=dev)
        self.n_positive = torch.zeros(s, dtype=torch.int64, device=dev)
        self.converged = torch.zeros(s, dtype=torch.bool, device=dev)
        self.n_steps = 0
        self.result = self.forces(state)

    def _sum(self, values):
        return sum_over_systems(values, self.state.system_idx, self.state.n_systems)

    def _check(self, previous_energy) -> None:
        st, res = self.state, self.result
        fmax = torch.zeros(st.n_systems, dtype=torch.float64, device=st.device).scatter_reduce(
            0, st.system_idx, res.forces.norm(dim=1).double(), "amax")
        ok = fmax < self.fmax
        if self.energy_tol is not None and previous_energy is not None:
            de = (res.energy - previous_energy).abs() / st.n_atoms_per_system
            ok &= de < self.energy_tol
        self.converged |= ok
        self.max_force = fmax

    def step(self) -> None:
        st = self.state
        sys = st.system_idx
        v, f = st.velocities, self.result.forces
        power = self._sum((f * v).sum(1))
        v_norm = torch.sqrt(self._sum((v * v).sum(1)))
        f_norm = torch.sqrt(self._sum((f * f).sum(1))).clamp(min=1e-300)
        uphill = power <= 0
        alpha = self.alpha.to(st.dtype)[sys, None]
        mixed = (1 - alpha) * v + alpha * f * (v_norm / f_norm).to(st.dtype)[sys, None]
        v = torch.where(uphill[sys, None], torch.zeros_like(v), mixed)
        grow = ~uphill & (self.n_positive > self.n_min)
        self.dt = torch.where(uphill, self.dt * self.f_dec,
                              torch.where(grow, torch.clamp(self.dt * self.f_inc,
                                                            max=self.dt_max), self.dt))
        self.alpha = torch.where(uphill, torch.full_like(self.alpha, self.alpha_start),
                                 torch.where(grow, self.alpha * self.f_alpha, self.alpha))
        self.n_positive = torch.where(uphill, torch.zeros_like(self.n_positive),
                                      self.n_positive + 1)
        dt = self.dt.to(st.dtype)[sys, None]
        v = v + dt * self.units.ftm2v * f / st.masses[:, None]
        dr = dt * v
        longest = torch.zeros(st.n_systems, dtype=st.dtype, device=st.device).scatter_reduce(
            0, sys, dr.norm(dim=1), "amax")
        scale = torch.clamp(self.max_step / longest.clamp(min=1e-300), max=1.0)
        moving = (~self.converged).to(st.dtype)
        st.positions += dr * (scale * moving)[sys, None]
        st.velocities.copy_(v * moving[sys, None])
        previous = self.result.energy
        self.result = self.forces(st)
        self.n_steps += 1
        self._check(previous)

    def run(self, max_steps: int = 1000) -> bool:
        """Minimise until every system converged or ``max_steps``; returns whether all did."""
        self._check(None)
        while not bool(self.converged.all()) and self.n_steps < max_steps:
            self.step()
        self.state.velocities.zero_()
        return bool(self.converged.all())
