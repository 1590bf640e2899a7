"""Integrators for batched systems: a velocity-Verlet core split around an optional thermostat
(``md.thermostats``). Per-system time steps and thermostat parameters.

One step, with B = kick by dt/2, A = drift by dt, F = forces at the new positions:
    no thermostat (NVE):         B A F B
    thermostat placed "outer":   T B A F B T      (T acts for dt/2: Nosé–Hoover chain, CSVR)
    thermostat placed "middle":  B A/2 T A/2 F B  (T acts for dt: Langevin, BAOAB)
Each integrator reports a conserved quantity per system (``conserved``): potential + kinetic
energy + the thermostat's account. A step performs no host synchronisation and updates every
tensor in place (CUDA graphs stay valid; ``variables()`` lists the integrator's own). The
force callback is ``compute(state, compute_stress)``; ``needs_stress`` tells whether a step
asks for the stress (a barostat will).

Units are those of the simulation: timestep in fs (metal) or τ (lj). ``VelocityVerlet``,
``Langevin``, ``NoseHooverChain`` and ``CSVR`` build the usual integrators.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from ..potentials import PotentialResult
from ..state import State
from ..units import get_units
from .thermostats import (
    CSVRThermostat,
    LangevinThermostat,
    NoseHooverChainThermostat,
    TemperatureSchedule,
    Thermostat,
)
from .velocities import degrees_of_freedom, kinetic_energy, per_system, remove_com_velocity


class Integrator:
    """Velocity Verlet with an optional ``thermostat``. ``remove_com``: the centre-of-mass
    velocity is removed at the start (and kept zero; 3 degrees of freedom fewer)."""

    needs_stress = False

    def __init__(self, timestep, thermostat: Thermostat | None = None, units="metal",
                 remove_com: bool = True):
        self.timestep = timestep
        self.thermostat = thermostat
        self.units = get_units(units)
        self.remove_com = remove_com
        self.dt: torch.Tensor | None = None

    @property
    def name(self) -> str:
        return self.thermostat.name if self.thermostat is not None else "nve"

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
        self.steps = torch.zeros((), dtype=torch.int64, device=state.device)
        self.scheduled = self.thermostat is not None and \
            isinstance(self.thermostat.temperature, TemperatureSchedule)
        if self.remove_com:
            remove_com_velocity(state)
        th = self.thermostat
        if th is not None:
            fraction = 0.5 if th.placement == "outer" else 1.0
            th.init(state, fraction * self.dt, self.dof, self.units, self.remove_com)

    # ------------------------------------------------------------------ steps
    # One fused multiply-add kernel each (these run several times per step on the GPU).
    def kick(self, state: State, forces: torch.Tensor, fraction: float = 0.5) -> None:
        state.velocities.addcmul_(self.kick_scale, forces, value=fraction)

    def drift(self, state: State, fraction: float = 1.0) -> None:
        state.positions.addcmul_(self.dt_atom, state.velocities, value=fraction)

    def step(self, state: State, result: PotentialResult, compute) -> PotentialResult:
        """One step from ``result`` (forces at the current positions); returns the result at
        the new positions."""
        th = self.thermostat
        outer = th is not None and th.placement == "outer"
        if th is not None:
            th.follow_schedule(state, self.steps)
        if outer:
            th.apply(state)
        self.kick(state, result.forces)
        if th is not None and not outer:
            self.drift(state, 0.5)
            th.apply(state)
            self.drift(state, 0.5)
        else:
            self.drift(state)
        result = compute(state, self.needs_stress)
        self.kick(state, result.forces)
        if outer:
            th.apply(state)
        if self.scheduled:
            self.steps += 1
        return result

    # -------------------------------------------------------------- reporting
    def thermostat_energy(self, state: State) -> torch.Tensor:
        """[S] energy held by the thermostat (0 for NVE)."""
        if self.thermostat is None:
            return torch.zeros(state.n_systems, dtype=torch.float64, device=state.device)
        return self.thermostat.energy()

    def conserved(self, state: State, result: PotentialResult, ke=None) -> torch.Tensor:
        """[S] conserved quantity: potential + kinetic + thermostat energy."""
        ke = kinetic_energy(state, self.units) if ke is None else ke
        return result.energy + ke + self.thermostat_energy(state)

    # ----------------------------------------------------------- dynamic state
    def variables(self) -> dict[str, torch.Tensor]:
        """Tensors that steps update in place: the step counter (counted when a temperature
        follows a schedule) and the thermostat's, all per system but ``steps`` []."""
        own = {"steps": self.steps}
        if self.thermostat is not None:
            own.update(self.thermostat.variables())
        return own

    def state_dict(self) -> dict:
        return {k: v.clone() for k, v in self.variables().items()}

    def load_state_dict(self, d: dict) -> None:
        """Copy saved variables into the live tensors (in place)."""
        live = self.variables()
        missing = sorted(set(live) - set(d))
        if missing:
            raise InputError(f"integrator state lacks {', '.join(missing)}")
        for key, tensor in live.items():
            tensor.copy_(d[key])


def VelocityVerlet(timestep, units="metal", remove_com: bool = True) -> Integrator:
    """NVE."""
    return Integrator(timestep, None, units, remove_com)


def Langevin(timestep, temperature, friction, units="metal", seed=0,
             remove_com: bool = True) -> Integrator:
    """BAOAB Langevin dynamics (``LangevinThermostat``); ``friction`` γ in 1/time."""
    return Integrator(timestep, LangevinThermostat(temperature, friction, seed), units,
                      remove_com)


def CSVR(timestep, temperature, tau, units="metal", seed=0,
         remove_com: bool = True) -> Integrator:
    """Velocity Verlet between two half steps of ``CSVRThermostat``."""
    return Integrator(timestep, CSVRThermostat(temperature, tau, seed), units, remove_com)


def NoseHooverChain(timestep, temperature, tau, units="metal", chain_length: int = 3,
                    remove_com: bool = True) -> Integrator:
    """Velocity Verlet between two half steps of ``NoseHooverChainThermostat``."""
    return Integrator(timestep, NoseHooverChainThermostat(temperature, tau, chain_length),
                      units, remove_com)
