"""Thermostats: the parts an ``Integrator`` splits around its velocity-Verlet core.

A thermostat acts on the velocities for a time h per application, either twice around the
step (``placement = "outer"``: T(dt/2) · VV · T(dt/2), as Nosé–Hoover chains and CSVR are
usually split) or once in the middle of the drift (``"middle"``: B A O A B, Langevin's BAOAB).
Every parameter is per system ([S] tensors: temperature, coupling time, seed); every variable
is a tensor updated in place (``variables``), so a step can be captured in a CUDA graph and
snapshots/checkpoints copy them; random numbers are counter-based (``md.random``), the draw
counter is one of the variables. ``energy()`` [S] is the thermostat's account (heat taken
from the system for Langevin and CSVR, the chain's energy for Nosé–Hoover), so that potential
+ kinetic + account is conserved up to the discretisation error.

Units are the simulation's: temperatures K (metal) or ε/k_B (lj), times fs or τ, friction
1/time. A temperature may be a ``TemperatureSchedule`` (annealing): its value at the
integrator's step is written into the thermostat's target before each step.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from ..state import State, sum_over_systems
from ..units import UnitSystem
from .random import draw_normals
from .velocities import kinetic_energy, per_system, remove_com_velocity


class TemperatureSchedule:
    """Piecewise-linear temperature over steps: ``steps`` [P] increasing, ``temperatures``
    [P] (every system) or [S][P] (per system); constant before the first and after the last
    point."""

    def __init__(self, steps, temperatures):
        self.steps = torch.as_tensor(steps, dtype=torch.float64)
        self.temperatures = torch.as_tensor(temperatures, dtype=torch.float64)
        if self.steps.ndim != 1 or self.steps.numel() < 1 or \
                bool((self.steps[1:] <= self.steps[:-1]).any()):
            raise InputError(f"temperature schedule: steps must increase, got {steps}")
        if self.temperatures.shape[-1] != self.steps.numel() or \
                bool((self.temperatures < 0).any()):
            raise InputError("temperature schedule: one temperature >= 0 per step point")

    def at(self, step: torch.Tensor, n_systems: int) -> torch.Tensor:
        """[S] temperatures at ``step`` ([] int64 on the device; no host sync)."""
        steps = self.steps.to(step.device)
        temps = self.temperatures.to(step.device).expand(n_systems, -1)
        x = step.to(torch.float64).clamp(steps[0], steps[-1])
        k = torch.searchsorted(steps, x.reshape(1), right=True).clamp(1, steps.numel() - 1)
        k = k.expand(n_systems)
        lo, hi = steps[k - 1], steps[k]
        w = ((x - lo) / (hi - lo)).clamp(0.0, 1.0) if steps.numel() > 1 else x * 0
        t_lo = temps.gather(1, (k - 1)[:, None])[:, 0]
        t_hi = temps.gather(1, k[:, None])[:, 0]
        return t_lo + w * (t_hi - t_lo)


class Thermostat:
    """Base: ``temperature`` a number, one per system, or a ``TemperatureSchedule``."""

    name = ""
    placement = "outer"

    def __init__(self, temperature):
        self.temperature = temperature

    def init(self, state: State, h: torch.Tensor, dof: torch.Tensor, units: UnitSystem,
             remove_com: bool = True) -> None:
        """Per-system parameters for ``state``; ``h`` [S] the time of one application, ``dof``
        [S] the degrees of freedom, ``remove_com`` whether the integrator keeps the
        centre-of-mass momentum zero."""
        self.units = units
        self.h, self.dof, self.remove_com = h, dof, remove_com
        self.kT = self.target(state.n_systems, state.device, torch.zeros((), dtype=torch.int64,
                                                                          device=state.device))
        self.heat = torch.zeros(state.n_systems, dtype=torch.float64, device=state.device)

    def target(self, n_systems: int, device, step: torch.Tensor) -> torch.Tensor:
        """[S] k_B·T at ``step``."""
        if isinstance(self.temperature, TemperatureSchedule):
            return self.temperature.at(step, n_systems) * self.units.kB
        t = per_system(self.temperature, n_systems, device, "temperature")
        if bool((t < 0).any()):
            raise InputError(f"temperature must be >= 0, got {self.temperature}")
        return t * self.units.kB

    def follow_schedule(self, state: State, step: torch.Tensor) -> None:
        """Set the target of a scheduled temperature for ``step`` (in place)."""
        if isinstance(self.temperature, TemperatureSchedule):
            self.kT.copy_(self.target(state.n_systems, state.device, step))

    def apply(self, state: State) -> None:
        """Act on the velocities for the time h (in place)."""

    def energy(self) -> torch.Tensor:
        """[S] the thermostat's account."""
        return self.heat

    def variables(self) -> dict[str, torch.Tensor]:
        """Per-system tensors that steps update in place."""
        return {"heat": self.heat}


class _Stochastic(Thermostat):
    """A thermostat drawing counter-based normals: ``seed`` an int (system s gets seed·2³² + s)
    or one int per system."""

    def __init__(self, temperature, seed=0):
        super().__init__(temperature)
        self.seed = 0 if seed is None else seed

    def init(self, state, h, dof, units, remove_com=True) -> None:
        super().init(state, h, dof, units, remove_com)
        s = state.n_systems
        if isinstance(self.seed, int):
            seeds = (self.seed << 32) + torch.arange(s)
        else:
            seeds = torch.as_tensor(self.seed, dtype=torch.int64).flatten()
            if seeds.numel() != s:
                raise InputError(f"seed: expected an int or {s} (one per system), "
                                 f"got {seeds.numel()}")
        self.seeds = seeds.to(state.device)
        self.draws = torch.zeros(s, dtype=torch.int64, device=state.device)
        first = torch.cumsum(state.n_atoms_per_system, 0) - state.n_atoms_per_system
        self.local_index = torch.arange(state.n_atoms, device=state.device) - \
            first[state.system_idx]

    def variables(self):
        return {"heat": self.heat, "draws": self.draws}

    def normals(self, state: State, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
        """([N, 3], [S]) float64 standard normals of the current draw; counts the draw."""
        z = draw_normals(self.seeds, self.draws, state.system_idx, self.local_index, stream)
        self.draws += 1
        return z


class LangevinThermostat(_Stochastic):
    """Langevin thermostat, the O part of BAOAB (Leimkuhler–Matthews): the exact
    Ornstein–Uhlenbeck step v ← c1 v + sqrt((1 − c1²) k_B T / m) ξ with c1 = exp(−γ h),
    ``friction`` γ in 1/time; the centre-of-mass velocity is removed after it when the
    integrator removes it."""

    name = "langevin"
    placement = "middle"

    def __init__(self, temperature, friction, seed=0):
        super().__init__(temperature, seed)
        self.friction = friction

    def init(self, state, h, dof, units, remove_com=True) -> None:
        super().init(state, h, dof, units, remove_com)
        gamma = per_system(self.friction, state.n_systems, state.device, "friction")
        c1 = torch.exp(-gamma * h)
        self.c1 = c1.to(state.dtype)[state.system_idx, None]
        self.noise_scale = ((1 - c1 * c1)[state.system_idx]
                            * units.ftm2v / state.masses.double())  # [N]: σ² / k_B T
        self.several = (state.n_atoms_per_system > 1)[:, None]  # systems with a COM to remove

    def apply(self, state: State) -> None:
        ke_before = kinetic_energy(state, self.units)
        sigma = torch.sqrt(self.noise_scale * self.kT[state.system_idx])
        noise = self.normals(state, 0)[0]
        state.velocities.mul_(self.c1).add_((sigma[:, None] * noise).to(state.dtype))
        if self.remove_com:
            remove_com_velocity(state, self.several)
        self.heat -= kinetic_energy(state, self.units) - ke_before


class CSVRThermostat(_Stochastic):
    """Canonical sampling through velocity rescaling (Bussi, Donadio, Parrinello 2007) with
    relaxation time ``tau``: the new kinetic energy is drawn exactly from the stochastic
    process over the time h; the χ² variate is a sum of N_f − 1 squared normals per system."""

    name = "csvr"

    def __init__(self, temperature, tau, seed=0):
        super().__init__(temperature, seed)
        self.tau = tau

    def init(self, state, h, dof, units, remove_com=True) -> None:
        super().init(state, h, dof, units, remove_com)
        tau = per_system(self.tau, state.n_systems, state.device, "tau")
        self.c = torch.exp(-h / tau)  # [S]
        # Component k of each system's flattened velocities feeds the χ² sum if k < N_f − 1.
        comp = 3 * self.local_index[:, None] + torch.arange(3, device=state.device)
        self.chi2_mask = (comp < (dof[state.system_idx, None] - 1)).to(torch.float64)

    def apply(self, state: State) -> None:
        ke = kinetic_energy(state, self.units)
        dof = self.dof.clamp(min=1)
        ke_target = 0.5 * dof * self.kT
        normals, r1 = self.normals(state, 1)
        chi2 = sum_over_systems((normals * normals * self.chi2_mask).sum(-1), state.system_idx,
                                state.n_systems)
        c = self.c
        ke_new = (c * ke + (1 - c) * ke_target * (r1 * r1 + chi2) / dof
                  + 2 * r1 * torch.sqrt(c * (1 - c) * ke * ke_target / dof))
        alpha = torch.sqrt(ke_new / ke.clamp(min=1e-300))
        alpha = torch.where(ke > 0, alpha, torch.ones_like(alpha))
        # sign so that α keeps the direction of v (the square root takes the positive branch)
        sign = torch.sign(r1 + torch.sqrt(c * ke * dof / ((1 - c) * ke_target.clamp(min=1e-300))))
        alpha = alpha * torch.where(sign == 0, torch.ones_like(sign), sign)
        state.velocities *= alpha.to(state.dtype)[state.system_idx, None]
        self.heat -= ke_new - ke


class NoseHooverChainThermostat(Thermostat):
    """Nosé–Hoover chain (Martyna, Klein, Tuckerman 1992), one chain per system, masses
    Q_1 = N_f k_B T τ², Q_k = k_B T τ² (set from the temperature at the start). Energy
    Σ ½ Q_k v_ξk² + N_f k_B T ξ_1 + k_B T Σ_{k≥2} ξ_k. On a GPU the chain update of an
    application is one Triton kernel (``triton_chain``) with the same operations."""

    name = "nose_hoover"

    def __init__(self, temperature, tau, chain_length: int = 3):
        super().__init__(temperature)
        if not isinstance(temperature, TemperatureSchedule) and \
                torch.as_tensor(temperature).le(0).any():
            raise InputError(f"Nosé–Hoover chain: temperature must be > 0 (the chain masses "
                             f"scale with it), got {temperature}")
        if chain_length < 1:
            raise InputError(f"chain_length must be >= 1, got {chain_length}")
        self.tau = tau
        self.chain_length = chain_length

    def init(self, state, h, dof, units, remove_com=True) -> None:
        super().init(state, h, dof, units, remove_com)
        tau = per_system(self.tau, state.n_systems, state.device, "tau")
        q = (self.kT * tau * tau)[:, None].repeat(1, self.chain_length)
        q[:, 0] *= dof
        self.Q = q  # [S, M]
        self.xi = torch.zeros_like(q)  # chain positions
        self.v_xi = torch.zeros_like(q)  # chain velocities
        self.span = 2 * h  # the Triton kernel and chain_step advance half of this

    def _force(self, k: int, ke2: torch.Tensor) -> torch.Tensor:
        if k == 0:
            return (ke2 - self.dof * self.kT) / self.Q[:, 0]
        return (self.Q[:, k - 1] * self.v_xi[:, k - 1] ** 2 - self.kT) / self.Q[:, k]

    def apply(self, state: State) -> None:
        ke2 = 2 * kinetic_energy(state, self.units)
        if ke2.is_cuda and self.v_xi.is_contiguous() and self.xi.is_contiguous():
            from .triton_chain import chain_half_step

            scale = chain_half_step(ke2, self)
        else:
            scale = self.chain_step(ke2)
        state.velocities *= scale.to(state.dtype)[state.system_idx, None]

    def chain_step(self, ke2: torch.Tensor) -> torch.Tensor:
        """Advance the chain by h from ke2 = 2·KE [S]; returns the velocity scale [S]."""
        m = self.chain_length
        dt2, dt4, dt8 = 0.5 * self.span, 0.25 * self.span, 0.125 * self.span
        v = self.v_xi

        def update(k):  # v_k ← (v_k e^{−v_{k+1} h/4} + G_k h/2) e^{−v_{k+1} h/4}
            if k < m - 1:
                damp = torch.exp(-dt8 * v[:, k + 1])
                v[:, k] = (v[:, k] * damp + dt4 * self._force(k, ke2)) * damp
            else:
                v[:, k] = v[:, k] + dt4 * self._force(k, ke2)

        for k in reversed(range(m)):
            update(k)
        scale = torch.exp(-dt2 * v[:, 0])
        ke2 = ke2 * scale * scale
        self.xi += dt2[:, None] * v
        for k in range(m):
            update(k)
        return scale

    def energy(self) -> torch.Tensor:
        return ((0.5 * self.Q * self.v_xi**2).sum(1) + self.dof * self.kT * self.xi[:, 0]
                + self.kT * self.xi[:, 1:].sum(1))

    def variables(self):
        return {"xi": self.xi, "v_xi": self.v_xi}
