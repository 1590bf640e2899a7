"""Simulation: the MD loop — integrator steps, neighbor list upkeep, reporters, health checks,
checkpoints and restart.

A checkpoint holds the full state, the integrator's variables with its RNG state, the neighbor
list and the last forces, so N steps + restart + N steps reproduces 2N straight steps bit for
bit on the same device.
"""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path

import torch

from ..errors import HayabusaError, InputError, SimulationError
from ..files import write_atomic
from ..potentials import Potential, PotentialResult
from ..state import State
from ..units import get_units
from .blocks import StepBlocks
from .forces import ForceEvaluator
from .integrators import Integrator
from .velocities import kinetic_energy, temperature

CHECKPOINT_FORMAT = "hayabusa-checkpoint-1"
DEFAULT_SKIN = {"metal": 2.0, "lj": 0.3}  # as LAMMPS's defaults (Å, σ)
DEFAULT_ENERGY_JUMP = {"metal": 1.0, "lj": 1.0}  # per atom, between two health checks


class Simulation:
    """Runs ``integrator`` on ``state`` with ``potential``.

    ``skin``: Verlet skin (length units; default 2 Å metal, 0.3 σ lj). ``check_every``:
    neighbor-list checks every so many steps. ``health_every``: how often the loop looks for
    NaN, lost atoms (an atom moving more than ``max_step_length`` in one step, default half
    the potential's cutoff) and jumps of the conserved energy larger than
    ``max_energy_jump`` per atom; it also looks before every report, so a checkpoint is only
    written from a healthy state.

    ``block_steps`` > 0 runs the steps between events in blocks of that many steps with no
    host synchronisation, replayed as one CUDA graph on a GPU (see ``StepBlocks``).
    """

    def __init__(self, state: State, potential: Potential, integrator: Integrator,
                 units="metal", skin: float | None = None, neighbor_backend: str = "auto",
                 check_every: int = 1, reporters=(), health_every: int = 10,
                 max_energy_jump: float | None = None, max_step_length: float | None = None,
                 block_steps: int = 0):
        self.units = get_units(units)
        if integrator.units.name != self.units.name:
            raise InputError(f"integrator uses {integrator.units.name} units but the simulation "
                             f"uses {self.units.name}")
        state.validate()
        potential.check_state(state)
        self.state = state
        self.potential = potential.to(state.device)
        self.integrator = integrator
        skin = DEFAULT_SKIN[self.units.name] if skin is None else float(skin)
        self.forces = ForceEvaluator(self.potential, skin, neighbor_backend, check_every, state)
        self.reporters = list(reporters)
        self.health_every = max(1, int(health_every))
        self.max_energy_jump = (DEFAULT_ENERGY_JUMP[self.units.name]
                                if max_energy_jump is None else max_energy_jump)
        self.max_step_length = max_step_length if max_step_length is not None else (
            0.5 * potential.cutoff if potential.cutoff > 0 else 1.0)
        self.step = 0
        self.target_step = 0
        self.result: PotentialResult | None = None
        self.error: Exception | None = None
        self.performance: dict | None = None
        self._last_conserved = None
        integrator.init(state)
        self.blocks = None
        if block_steps > 0:
            self.blocks = StepBlocks(integrator, self.forces, block_steps,
                                     cuda_graph=state.device.type == "cuda")

    # ------------------------------------------------------------- observables
    @property
    def time(self) -> float:
        """Simulated time of system 0 (fs for metal, τ for lj)."""
        return self.step * float(self.integrator.dt[0])

    def kinetic_energy(self) -> torch.Tensor:
        return kinetic_energy(self.state, self.units)

    def thermo(self) -> dict[str, torch.Tensor]:
        """[S] tensors: temp, pe, ke, etotal, press (GPa for metal; NaN unless fully periodic),
        conserved."""
        ke = self.kinetic_energy()
        pe = self.result.energy
        periodic = self.state.pbc.all(dim=1)
        press = torch.full_like(pe, float("nan"))
        if self.result.stress is None and bool(periodic.any()):
            # Stress is evaluated on demand: steps never pay for a virial nobody reads.
            self.result.stress = self.forces(self.state, compute_stress=True,
                                             update=False).stress
        if self.result.stress is not None:
            volume = self.state.volume.double()
            virial = -torch.diagonal(self.result.stress, dim1=1, dim2=2).sum(-1) / 3
            p = 2 * ke / (3 * volume) + virial
            press = torch.where(periodic, p, press)
        if self.units.pressure_to_GPa:
            press = press * self.units.pressure_to_GPa
        return {"temp": temperature(ke, self.integrator.dof, self.units), "pe": pe, "ke": ke,
                "etotal": pe + ke, "press": press,
                "conserved": self.integrator.conserved(self.state, self.result, ke)}

    # -------------------------------------------------------------------- loop
    def run(self, n_steps: int) -> Simulation:
        """Advance ``n_steps`` steps, calling reporters at their intervals."""
        self.target_step = self.step + int(n_steps)
        reporters = self.reporters
        if self.result is None:
            self.result = self.forces(self.state)
        self.error = None
        done = 0
        t0 = time.perf_counter()
        try:
            self.check_health()
            for r in reporters:
                r.start(self)
            if self.step == 0:
                for r in reporters:
                    r.report(self)
            while self.step < self.target_step:
                n = self._steps_to_next_event()
                if self.blocks is not None and n >= self.blocks.steps:
                    n = self.blocks.steps
                    self.result = self.blocks.run(self.state, self.result)
                else:
                    n = 1
                    self.result = self.integrator.step(self.state, self.result, self.forces)
                self.step += n
                done += n
                due = [r for r in reporters if self.step % r.interval == 0]
                if due or self.step % self.health_every == 0:
                    self.check_health()
                for r in due:
                    r.report(self)
        except HayabusaError as exc:
            self.error = exc
            raise
        finally:
            if self.state.device.type == "cuda":
                torch.cuda.synchronize(self.state.device)
            self._set_performance(done, time.perf_counter() - t0)
            for r in reporters:
                r.finish(self)
        return self

    def _steps_to_next_event(self) -> int:
        """Steps until the next report, health check or the end of the run."""
        intervals = [r.interval for r in self.reporters] + [self.health_every]
        nxt = min((self.step // i + 1) * i for i in intervals)
        return min(nxt, self.target_step) - self.step

    def _set_performance(self, steps: int, seconds: float) -> None:
        rate = steps / seconds if seconds > 0 else float("nan")
        dt = float(self.integrator.dt[0])
        self.performance = {
            "steps": steps, "loop_time_s": seconds, "timesteps_per_s": rate,
            "katom_steps_per_s": rate * self.state.n_atoms / 1e3,
            "ns_per_day": rate * dt * 86400 / 1e6, "hours_per_ns": 24e6 / (rate * dt * 86400)
            if rate > 0 else float("inf"),
            "time_per_day": rate * dt * 86400,
        }

    # ---------------------------------------------------------------- health
    def check_health(self) -> None:
        """Raise SimulationError naming the step and system on NaN, lost atoms or energy jump."""
        st, res = self.state, self.result
        bad_atom = ~(torch.isfinite(st.positions).all(1) & torch.isfinite(st.velocities).all(1)
                     & torch.isfinite(res.forces).all(1))
        step_length = st.velocities.norm(dim=1) * self.integrator.dt_atom[:, 0]
        lost = step_length > self.max_step_length
        conserved = self.integrator.conserved(st, res)
        n = st.n_atoms_per_system.to(torch.float64)
        jump = torch.zeros_like(conserved) if self._last_conserved is None else \
            (conserved - self._last_conserved).abs() / n
        flags = torch.stack([bad_atom.any(), lost.any(), (~torch.isfinite(res.energy)).any(),
                             (jump > self.max_energy_jump).any()])
        if not bool(flags.any()):  # the one host sync of a health check
            self._last_conserved = conserved
            return
        if bool(flags[0]) or bool(flags[2]):
            atoms = torch.nonzero(bad_atom).flatten()
            sys = int(st.system_idx[atoms[0]]) if atoms.numel() else \
                int(torch.nonzero(~torch.isfinite(res.energy))[0])
            raise SimulationError(f"step {self.step}, system {sys}: NaN or infinite positions, "
                                  f"velocities, forces or energy")
        if bool(flags[1]):
            atom = int(torch.nonzero(lost)[0])
            sys = int(st.system_idx[atom])
            raise SimulationError(
                f"step {self.step}, system {sys}: lost atoms — atom {atom} moved "
                f"{float(step_length[atom]):.3g} {self.units.length} in one step "
                f"(limit {self.max_step_length:g}); reduce the timestep")
        sys = int(torch.argmax(jump))
        raise SimulationError(
            f"step {self.step}, system {sys}: conserved energy jumped by "
            f"{float(jump[sys]):.3g} {self.units.energy}/atom since the last check "
            f"(limit {self.max_energy_jump:g}); reduce the timestep")

    # ------------------------------------------------------------ checkpoints
    def checkpoint_dict(self) -> dict:
        from .. import __version__

        nl = self.forces.neighbors
        result = {k: v for k, v in vars(self.result).items() if v is not None}
        return {
            "format": CHECKPOINT_FORMAT, "version": __version__, "units": self.units.name,
            "integrator_name": self.integrator.name, "step": self.step,
            "state": {f.name: getattr(self.state, f.name) for f in fields(self.state)},
            "integrator": self.integrator.state_dict(), "result": result,
            "neighbors": nl.state_dict() if nl is not None else None,
            "force_calls": self.forces.calls, "dangerous_builds": self.forces.dangerous_builds,
            "last_conserved": self._last_conserved,
        }

    def save_checkpoint(self, path) -> None:
        """Write a checkpoint atomically (temporary file, then rename)."""
        write_atomic(path, lambda tmp: torch.save(self.checkpoint_dict(), tmp))

    def load_checkpoint(self, path) -> Simulation:
        """Continue from a checkpoint written by ``save_checkpoint``."""
        path = Path(path)
        try:
            d = torch.load(path, map_location=self.state.device, weights_only=True)
        except FileNotFoundError:
            raise InputError(f"{path}: checkpoint not found") from None
        except Exception as exc:
            raise InputError(f"{path}: not a readable hayabusa checkpoint ({exc})") from None
        if not isinstance(d, dict) or d.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"{path}: not a hayabusa checkpoint (format "
                             f"{d.get('format') if isinstance(d, dict) else None!r})")
        if d["units"] != self.units.name or d["integrator_name"] != self.integrator.name:
            raise InputError(f"{path}: checkpoint is for {d['integrator_name']} in {d['units']} "
                             f"units, this run uses {self.integrator.name} in {self.units.name}")
        saved = d["state"]
        if saved["positions"].shape != self.state.positions.shape:
            raise InputError(f"{path}: checkpoint has {saved['positions'].shape[0]} atoms, "
                             f"this run has {self.state.n_atoms}")
        for key in ("atomic_numbers", "masses", "system_idx"):
            if not torch.equal(saved[key].to(self.state.device), getattr(self.state, key)):
                raise InputError(f"{path}: checkpoint {key} differ from this run's structure")
        for f in fields(self.state):
            setattr(self.state, f.name, saved[f.name])
        self.integrator.load_state_dict(d["integrator"])
        self.result = PotentialResult(**d["result"])
        if d["neighbors"] is not None:
            self.forces.neighbors.load_state_dict(d["neighbors"], self.state.device)
        self.forces.calls = d["force_calls"]
        self.forces.dangerous_builds = d["dangerous_builds"]
        self._last_conserved = d["last_conserved"]
        self.step = d["step"]
        return self
