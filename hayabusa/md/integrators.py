"""Integrators for batched systems: velocity Verlet (NVE), Langevin (BAOAB), Nosé–Hoover
chain, CSVR (Bussi). Per-system timesteps and thermostat targets.

Units are those of the simulation: timestep and thermostat times in fs (metal) or τ (lj);
temperatures in K (metal) or ε/k_B (lj); friction in 1/time. Each integrator reports a
conserved quantity per system (``conserved``): total energy plus the thermostat's energy
(its heat bath account for Langevin and CSVR, the chain's energy for Nosé–Hoover). A step
performs no host synchronisation.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from ..potentials import PotentialResult
from ..state import State, sum_over_systems
from ..units import get_units
from .velocities import degrees_of_freedom, kinetic_energy, per_system, remove_com_velocity


class Integrator:
    """Velocity Verlet; thermostatted subclasses add their operators around it."""

    name = "nve"

    def __init__(self, timestep, units="metal", remove_com: bool = True):
        self.timestep = timestep
        self.units = get_units(units)
        self.remove_com = remove_com
        self.dt: torch.Tensor | None = None

    # ------------------------------------------------------------------ setup
    def init(self, state: State) -> None:
        """Size per-system parameters for ``state``; remove COM velocity if asked."""
        self.dt = per_system(self.timestep, state.n_systems, state.device, "timestep")
        if bool((self.dt <= 0).any()):
            raise InputError(f"timestep must be positive, got {self.timestep}")
        self.dof = degrees_of_freedom(state, self.remove_com)
        self.dt_atom = self.dt.to(state.dtype)[state.system_idx, None]  # [N, 1]
        self.accel = (self.units.ftm2v / state.masses)[:, None]  # [N, 1] a = accel · F
        self.kick_scale = self.dt_atom * self.accel  # [N, 1] Δv = kick_scale · F per step
        if self.remove_com:
            remove_com_velocity(state)
        self.init_thermostat(state)

    def init_thermostat(self, state: State) -> None:
        """Thermostat variables (none for NVE)."""

    # ------------------------------------------------------------------ steps
    # One fused multiply-add kernel each (these run several times per step on the GPU).
    def kick(self, state: State, forces: torch.Tensor, fraction: float = 0.5) -> None:
        state.velocities.addcmul_(self.kick_scale, forces, value=fraction)

    def drift(self, state: State, fraction: float = 1.0) -> None:
        state.positions.addcmul_(self.dt_atom, state.velocities, value=fraction)

    def step(self, state: State, result: PotentialResult, compute) -> PotentialResult:
        """One step; ``compute(state)`` returns the PotentialResult at new positions."""
        self.kick(state, result.forces)
        self.drift(state)
        result = compute(state)
        self.kick(state, result.forces)
        return result

    # -------------------------------------------------------------- reporting
    def thermostat_energy(self, state: State) -> torch.Tensor:
        """[S] energy held by the thermostat (0 for NVE)."""
        return torch.zeros(state.n_systems, dtype=torch.float64, device=state.device)

    def conserved(self, state: State, result: PotentialResult, ke=None) -> torch.Tensor:
        """[S] conserved quantity: potential + kinetic + thermostat energy."""
        ke = kinetic_energy(state, self.units) if ke is None else ke
        return result.energy + ke + self.thermostat_energy(state)

    # ------------------------------------------------------------ checkpoints
    def variables(self) -> dict[str, torch.Tensor]:
        """Thermostat tensors that steps update in place (none for NVE)."""
        return {}

    def state_dict(self) -> dict:
        """Thermostat variables and, for stochastic thermostats, the generator state."""
        d = dict(self.variables())
        if getattr(self, "generator", None) is not None:
            d["generator"] = self.generator.get_state()
        return d

    def load_state_dict(self, d: dict) -> None:
        for key, value in d.items():
            current = getattr(self, key)
            if isinstance(current, torch.Generator):
                current.set_state(value)
            else:
                setattr(self, key, value.to(current.device) if torch.is_tensor(value) else value)


VelocityVerlet = Integrator


class _Thermostatted(Integrator):
    def __init__(self, timestep, temperature, units="metal", seed: int | None = 0,
                 remove_com: bool = True):
        super().__init__(timestep, units, remove_com)
        self.temperature = temperature
        self.seed = seed

    def init_thermostat(self, state: State) -> None:
        t = per_system(self.temperature, state.n_systems, state.device, "temperature")
        if bool((t < 0).any()):
            raise InputError(f"temperature must be >= 0, got {self.temperature}")
        self.kT = t * self.units.kB  # [S]
        if self.seed is not None:  # stochastic thermostats only
            self.generator = torch.Generator(device=state.device)
            self.generator.manual_seed(int(self.seed))
        self.heat = torch.zeros(state.n_systems, dtype=torch.float64, device=state.device)

    def thermostat_energy(self, state: State) -> torch.Tensor:
        return self.heat

    def variables(self) -> dict[str, torch.Tensor]:
        return {"heat": self.heat}


class Langevin(_Thermostatted):
    """BAOAB Langevin dynamics (Leimkuhler–Matthews): B A O A B.

    ``friction`` γ in 1/time. The O step is exact for the Ornstein–Uhlenbeck process:
    v ← c1 v + sqrt((1 − c1²) k_B T / m) ξ with c1 = exp(−γ dt). ``heat`` accounts for the
    kinetic energy the bath removed, so ``conserved`` stays constant up to discretisation error.
    """

    name = "langevin"

    def __init__(self, timestep, temperature, friction, units="metal", seed: int = 0,
                 remove_com: bool = True):
        super().__init__(timestep, temperature, units, 0 if seed is None else seed, remove_com)
        self.friction = friction

    def init_thermostat(self, state: State) -> None:
        super().init_thermostat(state)
        gamma = per_system(self.friction, state.n_systems, state.device, "friction")
        c1 = torch.exp(-gamma * self.dt)
        self.c1 = c1.to(state.dtype)[state.system_idx, None]
        sigma = torch.sqrt((1 - c1 * c1)[state.system_idx] * self.kT[state.system_idx]
                           * self.units.ftm2v / state.masses.double())
        self.c2 = sigma.to(state.dtype)[:, None]

    def step(self, state, result, compute):
        self.kick(state, result.forces)
        self.drift(state, 0.5)
        ke_before = kinetic_energy(state, self.units)
        noise = torch.randn(state.velocities.shape, generator=self.generator,
                            device=state.device, dtype=state.dtype)
        state.velocities.mul_(self.c1).add_(self.c2 * noise)
        if self.remove_com:
            remove_com_velocity(state)
        self.heat -= kinetic_energy(state, self.units) - ke_before
        self.drift(state, 0.5)
        result = compute(state)
        self.kick(state, result.forces)
        return result


class CSVR(_Thermostatted):
    """Canonical sampling through velocity rescaling (Bussi, Donadio, Parrinello 2007).

    Half a thermostat step (dt/2) before and after velocity Verlet. The new kinetic energy is
    drawn exactly from the stochastic process with relaxation time ``tau``; the χ² variate is a
    sum of squared normals (N_f − 1 of them per system), so one seeded generator drives it.
    """

    name = "csvr"

    def __init__(self, timestep, temperature, tau, units="metal", seed: int = 0,
                 remove_com: bool = True):
        super().__init__(timestep, temperature, units, 0 if seed is None else seed, remove_com)
        self.tau = tau

    def init_thermostat(self, state: State) -> None:
        super().init_thermostat(state)
        tau = per_system(self.tau, state.n_systems, state.device, "tau")
        self.c = torch.exp(-0.5 * self.dt / tau)  # [S] factor for half a step
        # Component k of each system's flattened velocities feeds the χ² sum if k < N_f − 1.
        first = torch.cumsum(state.n_atoms_per_system, 0) - state.n_atoms_per_system
        local = torch.arange(state.n_atoms, device=state.device) - first[state.system_idx]
        comp = 3 * local[:, None] + torch.arange(3, device=state.device)
        self.chi2_mask = (comp < (self.dof[state.system_idx, None] - 1)).to(torch.float64)

    def rescale(self, state: State) -> None:
        ke = kinetic_energy(state, self.units)
        dof = self.dof.clamp(min=1)
        ke_target = 0.5 * dof * self.kT
        normals = torch.randn(state.positions.shape, generator=self.generator,
                              device=state.device, dtype=torch.float64)
        r1 = torch.randn(state.n_systems, generator=self.generator, device=state.device,
                         dtype=torch.float64)
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

    def step(self, state, result, compute):
        self.rescale(state)
        result = super().step(state, result, compute)
        self.rescale(state)
        return result


class NoseHooverChain(_Thermostatted):
    """Nosé–Hoover chain NVT (Martyna, Klein, Tuckerman 1992), one chain per system.

    Masses Q_1 = N_f k_B T τ², Q_k = k_B T τ²; the chain is propagated for dt/2 before and after
    velocity Verlet (Trotter splitting). ``conserved`` = E_pot + E_kin + Σ ½ Q_k v_ξk²
    + N_f k_B T ξ_1 + k_B T Σ_{k≥2} ξ_k.
    """

    name = "nose_hoover"

    def __init__(self, timestep, temperature, tau, units="metal", chain_length: int = 3,
                 remove_com: bool = True):
        super().__init__(timestep, temperature, units, None, remove_com)
        if torch.as_tensor(temperature).le(0).any():
            raise InputError(f"Nosé–Hoover chain: temperature must be > 0 (the chain masses "
                             f"scale with it), got {temperature}")
        if chain_length < 1:
            raise InputError(f"chain_length must be >= 1, got {chain_length}")
        self.tau = tau
        self.chain_length = chain_length

    def init_thermostat(self, state: State) -> None:
        super().init_thermostat(state)
        tau = per_system(self.tau, state.n_systems, state.device, "tau")
        m = self.chain_length
        q = (self.kT * tau * tau)[:, None].repeat(1, m)
        q[:, 0] *= self.dof
        self.Q = q  # [S, M]
        self.xi = torch.zeros_like(q)  # chain positions
        self.v_xi = torch.zeros_like(q)  # chain velocities

    def _force(self, k: int, ke2: torch.Tensor) -> torch.Tensor:
        if k == 0:
            return (ke2 - self.dof * self.kT) / self.Q[:, 0]
        return (self.Q[:, k - 1] * self.v_xi[:, k - 1] ** 2 - self.kT) / self.Q[:, k]

    def half_step(self, state: State) -> None:
        """Propagate the chain and scale particle velocities for dt/2 (on a GPU the chain
        update is one Triton kernel, ``triton_chain``, with the same operations)."""
        ke2 = 2 * kinetic_energy(state, self.units)
        if ke2.is_cuda and self.v_xi.is_contiguous() and self.xi.is_contiguous():
            from .triton_chain import chain_half_step

            scale = chain_half_step(ke2, self)
        else:
            scale = self.chain_half_step(ke2)
        state.velocities *= scale.to(state.dtype)[state.system_idx, None]

    def chain_half_step(self, ke2: torch.Tensor) -> torch.Tensor:
        """Advance the chain by dt/2 from ke2 = 2·KE [S]; returns the velocity scale [S]."""
        m = self.chain_length
        dt2, dt4, dt8 = 0.5 * self.dt, 0.25 * self.dt, 0.125 * self.dt
        v = self.v_xi

        def update(k):  # v_k ← (v_k e^{−v_{k+1} dt/8} + G_k dt/4) e^{−v_{k+1} dt/8}
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

    def step(self, state, result, compute):
        self.half_step(state)
        result = super(_Thermostatted, self).step(state, result, compute)
        self.half_step(state)
        return result

    def thermostat_energy(self, state: State) -> torch.Tensor:
        return ((0.5 * self.Q * self.v_xi**2).sum(1) + self.dof * self.kT * self.xi[:, 0]
                + self.kT * self.xi[:, 1:].sum(1))

    def variables(self) -> dict[str, torch.Tensor]:
        return {"xi": self.xi, "v_xi": self.v_xi}
