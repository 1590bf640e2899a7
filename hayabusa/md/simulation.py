"""Simulation: the MD loop — integrator steps, neighbor list upkeep, reporters, health checks,
snapshots, checkpoints and restart.

A checkpoint holds the full state, the integrator's variables (random-number counters
included), the neighbor list, the last forces, the run id and what defines the system (atoms
per system, species, dtype, units, the potential's fingerprint), so N steps + restart + N
steps reproduces 2N straight steps bit for bit on the same device, and a restart into a run
that defines another system is refused with the difference named.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import fields
from pathlib import Path

import torch

from ..errors import HayabusaError, InputError, SimulationError
from ..files import load_torch, write_atomic
from ..potentials import Potential, PotentialResult
from ..rundir import new_run_id
from ..state import State, first_flagged_atom, sum_over_systems
from ..units import get_units
from .blocks import StepBlocks
from .forces import ForceEvaluator
from .integrators import Integrator
from .snapshot import Snapshot
from .velocities import kinetic_energy, temperature

CHECKPOINT_FORMAT = "hayabusa-checkpoint-2"
DEFAULT_SKIN = {"metal": 2.0, "lj": 0.3}  # as LAMMPS's defaults (Å, σ)
#: a conserved-energy change between two health checks is a failure beyond
#: JUMP_FACTOR · k_B·T · √N_f of the system (its own energy-fluctuation scale), and beyond
#: ENERGY_FLOOR per atom (a system near 0 K)
JUMP_FACTOR = 10.0
ENERGY_FLOOR = {"metal": 1e-3, "lj": 1e-3}


def potential_fingerprint(potential: Potential) -> str:
    """SHA-256 of what defines a potential: its class, cutoff, precision and every parameter
    and buffer (model weights included)."""
    h = hashlib.sha256(type(potential).__name__.encode())
    h.update(repr((potential.cutoff, getattr(potential, "precision", None))).encode())
    for name, value in sorted(potential.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Simulation:
    """Runs ``integrator`` on ``state`` with ``potential``.

    ``skin``: Verlet skin (length units; default 2 Å metal, 0.3 σ lj). ``check_every``:
    neighbor-list checks every so many eager steps. ``health_every``: steps between health
    checks (also before every report, so nothing is written from a failed state): per system,
    non-finite values, an atom moving more than ``max_step_length`` in one step or pushed that
    far by its force, and a conserved-energy jump beyond the system's own fluctuation scale;
    before reports also pairs closer than the potential's ``core_radius``. A failed check
    raises SimulationError naming the step, system and atom and the likely cause.

    ``block_steps`` > 0 runs the steps between events in blocks of that many steps with no
    host synchronisation, replayed as one CUDA graph on a GPU (see ``StepBlocks``).
    ``run_id`` names the run (checkpoints, logs and trajectories carry it); default new.
    """

    def __init__(self, state: State, potential: Potential, integrator: Integrator,
                 units="metal", skin: float | None = None, neighbor_backend: str = "auto",
                 check_every: int = 1, reporters=(), health_every: int = 10,
                 max_step_length: float | None = None, block_steps: int = 0,
                 run_id: str | None = None):
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
        self.max_step_length = max_step_length if max_step_length is not None else (
            0.5 * potential.cutoff if potential.cutoff > 0 else 1.0)
        self.run_id = run_id or new_run_id()
        self.step = 0
        self.target_step = 0
        self.result: PotentialResult | None = None
        self.error: Exception | None = None
        self.performance: dict | None = None
        self._last_conserved = None
        integrator.init(state)
        self._block_steps = int(block_steps)
        self.blocks: StepBlocks | None = None
        self._buffers: PotentialResult | None = None  # persistent energy/forces
        self._thermo: tuple | None = None  # (key, values) of the last thermo()

    # ------------------------------------------------------------- observables
    @property
    def time(self) -> float:
        """Simulated time of system 0 (fs for metal, τ for lj)."""
        return self.step * float(self.integrator.dt[0])

    @property
    def neighbors(self):
        """The neighbor list (None for potentials without a cutoff)."""
        return self.forces.neighbors

    def kinetic_energy(self) -> torch.Tensor:
        return kinetic_energy(self.state, self.units)

    def thermo(self) -> dict[str, torch.Tensor]:
        """[S] tensors: temp, pe, ke, etotal, press (GPa for metal; NaN unless fully periodic),
        conserved. Computed once per state (several per-system logs read the same)."""
        key = (self.step, self.state.positions._version, self.state.velocities._version,
               self.result.forces._version, id(self.result))
        if self._thermo is not None and self._thermo[0] == key:
            return self._thermo[1]
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
        values = {"temp": temperature(ke, self.integrator.dof, self.units), "pe": pe, "ke": ke,
                  "etotal": pe + ke, "press": press,
                  "conserved": self.integrator.conserved(self.state, self.result, ke)}
        self._thermo = (key, values)
        return values

    # ------------------------------------------------------- results, snapshots
    def _start(self, first: PotentialResult | None = None) -> None:
        """Forces at the current positions (or ``first``) into the persistent buffers that
        ``result`` holds (steps update these in place, so snapshots and CUDA graphs read the
        same memory); ``result = None`` asks for this before the next run."""
        first = self.forces(self.state) if first is None else first
        if self._buffers is None:
            self._buffers = PotentialResult(first.energy.clone(), first.forces.clone())
        self.result = self._buffers
        self._keep(first)
        if self._block_steps > 0 and self.blocks is None:
            self.blocks = StepBlocks(self.integrator, self.forces, self._block_steps,
                                     self.result, self.snapshot(),
                                     cuda_graph=self.state.device.type == "cuda")

    def _keep(self, result: PotentialResult) -> None:
        self.result.energy.copy_(result.energy)
        self.result.forces.copy_(result.forces)
        self.result.stress, self.result.atom_energy = result.stress, result.atom_energy

    def snapshot(self) -> Snapshot:
        """A ``Snapshot`` of this simulation's dynamic state (positions, velocities, cell, the
        integrator's variables, the last energies and forces), not yet taken."""
        if self.result is None:
            self._start()
        variables = self.integrator.variables()
        system = {k: v for k, v in variables.items() if v.ndim > 0}
        batch = {k: v for k, v in variables.items() if v.ndim == 0}
        st = self.state
        return Snapshot({"positions": st.positions, "velocities": st.velocities,
                         "forces": self.result.forces},
                        {"cell": st.cell, "energy": self.result.energy, **system}, batch,
                        st.system_idx)

    # -------------------------------------------------------------------- loop
    def run(self, n_steps: int) -> Simulation:
        """Advance ``n_steps`` steps, calling reporters at their intervals."""
        self.target_step = self.step + int(n_steps)
        reporters = self.reporters
        if self.result is None:
            self._start()
        self.error = None
        done = 0
        t0 = time.perf_counter()
        try:
            self.check_health(thorough=True)
            for r in reporters:
                r.start(self)
            if self.step == 0:
                for r in reporters:
                    r.report(self)
            while self.step < self.target_step:
                n = self._steps_to_next_event()
                if self.blocks is not None and n >= self.blocks.steps:
                    n = self.blocks.steps
                    self.blocks.run(self.state)
                    self.result.stress = self.result.atom_energy = None
                else:
                    n = 1
                    self._keep(self.integrator.step(self.state, self.result, self.forces))
                self.step += n
                done += n
                due = [r for r in reporters if self.step % r.interval == 0]
                if due or self.step % self.health_every == 0:
                    self.check_health(thorough=bool(due))
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
    def check_health(self, thorough: bool = False) -> None:
        """Raise SimulationError naming the step, system and atom for the first failed check
        (see the class docstring); ``thorough`` adds the pair-distance check. One host sync
        when healthy."""
        st, res, integ = self.state, self.result, self.integrator
        speed2 = (st.velocities * st.velocities).sum(1)  # [N]
        force2 = (res.forces * res.forces).sum(1)
        dt = integ.dt_atom[:, 0]
        limit = self.max_step_length
        # NaN and ±inf anywhere in an atom's row make this sum non-finite
        finite = torch.isfinite(st.positions.sum(1) + speed2 + force2)
        unhealthy = ~finite | (speed2 * dt * dt > limit * limit) | \
            (force2 * (0.5 * integ.accel[:, 0] * dt * dt) ** 2 > limit * limit)
        ke = 0.5 * self.units.mvv2e * sum_over_systems(st.masses * speed2, st.system_idx,
                                                       st.n_systems)
        conserved = integ.conserved(st, res, ke)
        if self._last_conserved is None or self._last_conserved[0].shape != conserved.shape:
            jump, ke_before = torch.zeros_like(conserved), ke
        else:
            jump = (conserved - self._last_conserved[0]).abs()
            ke_before = self._last_conserved[1]
        # k_B T √N_f = 2 KE / √N_f, at the last healthy check
        scale = torch.maximum(JUMP_FACTOR * 2 * ke_before / integ.dof.clamp(min=1).sqrt(),
                              ENERGY_FLOOR[self.units.name] * st.n_atoms_per_system)
        close = None
        if thorough and self.potential.core_radius > 0 and self.neighbors is not None:
            close = self._closest_pairs()
            unhealthy = unhealthy | (close[0] < self.potential.core_radius)
        if not bool(unhealthy.any() | (jump > scale).any()):  # the one host sync if healthy
            self._last_conserved = (conserved, ke)
            return
        step_length = speed2.sqrt() * dt
        push = 0.5 * force2.sqrt() * integ.accel[:, 0] * dt * dt
        per_atom = [~finite, step_length > limit, push > limit]
        if close is not None:
            per_atom.append(close[0] < self.potential.core_radius)
        self._raise_failure(per_atom, step_length, push, jump, scale, close)

    def _closest_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """([N] distance to each atom's nearest neighbour in the list, [N] that neighbour)."""
        neighbors, _, mask, vec = self.neighbors.slots(self.state)
        far = torch.full((vec.shape[0], 1), float("inf"), dtype=vec.dtype, device=vec.device)
        r = torch.cat([torch.where(mask, vec.norm(dim=-1), far), far], 1)  # [N, K + 1]
        nearest, slot = r.min(dim=1)
        own = torch.arange(vec.shape[0], device=vec.device)[:, None]
        return nearest, torch.cat([neighbors, own], 1).gather(1, slot[:, None])[:, 0]

    def _raise_failure(self, per_atom, step_length, push, jump, scale, close) -> None:
        st, unit = self.state, self.units.length
        head = f"step {self.step}"
        if bool(per_atom[0].any()):
            atom, system, local = first_flagged_atom(st, per_atom[0])
            raise SimulationError(
                f"{head}, system {system}, atom {local}: NaN or infinite position, velocity, "
                f"force or energy — likely a time step too large for this potential or a model "
                f"far outside its training range")
        if close is not None and bool(per_atom[3].any()):
            atom, system, local = first_flagged_atom(st, per_atom[3])
            other = int(close[1][atom]) - (atom - local)  # in the system's numbering
            raise SimulationError(
                f"{head}, system {system}: atoms {local} and {other} are "
                f"{float(close[0][atom]):.3g} {unit} apart, inside the potential's core "
                f"({self.potential.core_radius:g} {unit}) — likely a time step too large, too "
                f"small a cutoff for this density, or a model outside its training range")
        if bool(per_atom[1].any()):
            atom, system, local = first_flagged_atom(st, per_atom[1])
            raise SimulationError(
                f"{head}, system {system}, atom {local}: lost — moved "
                f"{float(step_length[atom]):.3g} {unit} in one step (limit "
                f"{self.max_step_length:g}); likely a time step too large")
        if bool(per_atom[2].any()):
            atom, system, local = first_flagged_atom(st, per_atom[2])
            raise SimulationError(
                f"{head}, system {system}, atom {local}: its force would move it "
                f"{float(push[atom]):.3g} {unit} in one step (limit {self.max_step_length:g}) "
                f"— likely atoms too close (a bad start, too small a cutoff for this density) "
                f"or a time step too large")
        system = int(torch.argmax(jump / scale))
        raise SimulationError(
            f"{head}, system {system}: conserved energy jumped by {float(jump[system]):.3g} "
            f"{self.units.energy} since the last check (limit {float(scale[system]):.3g}, "
            f"{JUMP_FACTOR:g}·k_B·T·√N_f) — likely a time step too large")

    # ------------------------------------------------------------ checkpoints
    def identity(self) -> dict:
        """What defines the system this simulation runs (compared on restart)."""
        st = self.state
        return {"atoms_per_system": st.n_atoms_per_system.tolist(),
                "atomic_numbers": hashlib.sha256(
                    st.atomic_numbers.cpu().numpy().tobytes()).hexdigest(),
                "dtype": str(st.dtype).removeprefix("torch."), "units": self.units.name,
                "integrator": self.integrator.name,
                "potential": type(self.potential).__name__,
                "potential_sha256": potential_fingerprint(self.potential)}

    def checkpoint_dict(self) -> dict:
        from .. import __version__

        nl = self.neighbors
        result = {"energy": self.result.energy, "forces": self.result.forces}
        return {
            "format": CHECKPOINT_FORMAT, "version": __version__, "run_id": self.run_id,
            "identity": self.identity(), "step": self.step,
            "state": {f.name: getattr(self.state, f.name) for f in fields(self.state)},
            "integrator": self.integrator.state_dict(), "result": result,
            "neighbors": nl.state_dict() if nl is not None else None,
            "last_conserved": self._last_conserved,
        }

    def save_checkpoint(self, path) -> None:
        """Write a checkpoint atomically (temporary file, then rename)."""
        write_atomic(path, lambda tmp: torch.save(self.checkpoint_dict(), tmp))

    def load_checkpoint(self, path) -> Simulation:
        """Continue from a checkpoint written by ``save_checkpoint`` for the same system."""
        d = read_checkpoint(path, self.state.device)
        mine, theirs = self.identity(), d["identity"]
        for key in mine:
            if mine[key] != theirs.get(key):
                raise InputError(f"{path}: the checkpoint is of another system — {key} "
                                 f"{_short(theirs.get(key))} there, {_short(mine[key])} here")
        saved = d["state"]
        for f in fields(self.state):
            value = saved[f.name]
            current = getattr(self.state, f.name)
            if isinstance(current, torch.Tensor):
                current.copy_(value)  # in place: snapshots and graphs keep their tensors
            else:
                setattr(self.state, f.name, value)
        self.integrator.load_state_dict(d["integrator"])
        if d["neighbors"] is not None:
            self.neighbors.load_state_dict(d["neighbors"], self.state)
        self._start(PotentialResult(d["result"]["energy"], d["result"]["forces"]))
        self._last_conserved = d["last_conserved"]
        self.step = d["step"]
        self.run_id = d["run_id"]
        return self


def read_checkpoint(path, device="cpu") -> dict:
    """The contents of a checkpoint file; a missing, unreadable, truncated, damaged or foreign
    file is an InputError naming it."""
    path = Path(path)
    d = load_torch(path, "checkpoint", map_location=device)
    if not isinstance(d, dict) or d.get("format") != CHECKPOINT_FORMAT:
        found = d.get("format") if isinstance(d, dict) else None
        raise InputError(f"{path}: not a hayabusa checkpoint of format {CHECKPOINT_FORMAT} "
                         f"(found {found!r})")
    return d


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:16] + "…"
