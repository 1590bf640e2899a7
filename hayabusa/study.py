"""``hayabusa study CONFIG.yaml``: Li transport and segregation in LLZO, from one config to a
report — structures → (FIRE) → NVT MD at every temperature → ``analyze_run`` → ``write_report``.

Config (YAML; lengths Å, times fs, temperatures K; unknown keys are errors; paths are relative
to the config file)::

  model:
    file: PATH                          hayabusa model file (hayabusa.load_model)
    metrics_file?: PATH                 metrics.json of ``hayabusa train``/``hayabusa test``
                                        (its test split) → RUN_DIR/model_metrics.json
    parity_plot_file?: PATH             → RUN_DIR/parity.png
    labels?: str                        what the training labels are ("SevenNet-0 (surrogate of
                                        PBE), not DFT"); default: the metrics file's or the
                                        model file's "labels"
  systems:                              name → structure (names: letters, digits, _)
    NAME: {builder: cubic_llzo, supercell: 1 | [n1, n2, n3] = 1, lattice_constant_A = 12.97,
           tet_occupancy?}
    NAME: {builder: llzo_grain_boundary, sigma: 5, plane: [3, 1, 0], lattice_constant_A = 12.97,
           expand_times = 1, in_plane = [1, 1]}   (hayabusa.materials.llzo_grain_boundary)
    NAME: {file: PATH, index: -1, gb_normal_axis?: 0|1|2, gb_planes_A?: [z1, z2]}
  temperatures_K: [T1, T2, ...]
  timestep_fs: 2.0
  equilibration_steps: int = 0          NVT before the trajectory starts
  production_steps: int                 NVT written to traj.h5
  trajectory_every: int                 steps between frames (divides both step counts)
  thermo_every: int = 100               steps between thermo-log rows
  checkpoint_every?: int                steps between checkpoints (default: end of each batch)
  thermostat: {type: nose_hoover, tau_fs = 100, chain_length = 3}
          or  {type: csvr, tau_fs = 100}  or  {type: langevin, friction_per_fs = 0.01}
  relax?: {fmax_eV_per_A: 0.1, max_steps: 200}   FIRE at fixed cell before MD
  collapse_distance_A: 0.5              a run ending with two atoms nearer than this is an
                                        error (collapsed atoms: the potential failed; no bond
                                        in an oxide is shorter, H2 is 0.74 Å); 0 turns it off
  skin_A: 1.0                           Verlet skin of the neighbor list
  neighbor_backend: auto | cell | min_image | brute | vesin = auto   (hayabusa.md.Simulation)
  block_steps: int = 0                  steps per CUDA-graph block (see hayabusa.md.Simulation)
  batch_temperatures: true              all temperatures of a system in one batched State
  device: auto | cpu | cuda[:N] = auto
  seed: int = 0                         builders, velocities, stochastic thermostats

Run directory (the contract read by hayabusa.analysis.run and hayabusa.viz.report)::

  RUN_DIR/config.yaml, model_metrics.json?, parity.png?
  RUN_DIR/<system>-<T>K/{log.hayabusa, traj.h5, start.extxyz, run.json}
  RUN_DIR/checkpoints/<system>.pt       last state of each batch (Simulation.load_checkpoint)
  RUN_DIR/analysis.json, */li_density.npz, report.html, view.html, plots/

Each batch holds one system at all its temperatures (per-system thermostat targets); every
system of the batch gets its own log, trajectory and run.json through a one-system view of the
batched Simulation. Trajectory frames cover the production phase only (its first frame is the
equilibrated state); the log holds both phases with continuous step numbers.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    ValidationError,
    model_validator,
)

from .config import (
    NonNegative,
    NonNegativeInt,
    Positive,
    PositiveInt,
    check_device,
    read_yaml,
    require_mapping,
)
from .errors import InputError, SimulationError
from .files import prepare_output, write_atomic

CONFIG_NAME = "config.yaml"
METRICS_NAME = "model_metrics.json"
PARITY_NAME = "parity.png"
LOG_NAME = "log.hayabusa"
TRAJ_NAME = "traj.h5"
START_NAME = "start.extxyz"
RUN_JSON_NAME = "run.json"
CHECKPOINT_DIR = "checkpoints"
#: files and folders of RUN_DIR that a study (and its analysis and report) writes
STUDY_OUTPUTS = (CONFIG_NAME, METRICS_NAME, PARITY_NAME, CHECKPOINT_DIR, "analysis.json",
                 "report.html", "view.html", "plots")
_NAME = re.compile(r"[A-Za-z0-9_]+")


# ----------------------------------------------------------------------------- config
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _supercell(value: Any) -> int | tuple[int, int, int]:
    reps = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(reps) not in (1, 3) or not all(isinstance(r, int) and not isinstance(r, bool)
                                          and r >= 1 for r in reps):
        raise ValueError(f"expected a positive integer or a list of three, got {value!r}")
    return reps[0] if len(reps) == 1 else tuple(reps)


class CubicLLZO(_Model):
    """Cubic LLZO (hayabusa.materials.cubic_llzo) repeated ``supercell`` times."""

    builder: Literal["cubic_llzo"]
    supercell: Annotated[Any, PlainValidator(_supercell)] = 1
    lattice_constant_A: Positive = 12.97
    tet_occupancy: Positive | None = None


def _ints(n: int):
    def check(value: Any) -> tuple[int, ...]:
        if not (isinstance(value, (list, tuple)) and len(value) == n and
                all(isinstance(x, int) and not isinstance(x, bool) for x in value)):
            raise ValueError(f"expected a list of {n} integers, got {value!r}")
        return tuple(value)
    return PlainValidator(check)


class GrainBoundary(_Model):
    """LLZO symmetric tilt bicrystal (hayabusa.materials.llzo_grain_boundary)."""

    builder: Literal["llzo_grain_boundary"]
    sigma: PositiveInt = 5
    plane: Annotated[tuple[int, int, int], _ints(3)] = (3, 1, 0)
    lattice_constant_A: Positive = 12.97
    expand_times: PositiveInt = 1
    in_plane: Annotated[tuple[int, int], _ints(2)] = (1, 1)


class FileSystem(_Model):
    """Frame ``index`` of ``file`` (any ASE format); a grain boundary names its planes."""

    file: str
    index: Annotated[int, Field(strict=True)] = -1
    gb_normal_axis: Literal[0, 1, 2] | None = None
    gb_planes_A: list[NonNegative] | None = None

    @model_validator(mode="after")
    def _both_or_neither(self):
        if (self.gb_normal_axis is None) != (self.gb_planes_A is None):
            raise ValueError("give both gb_normal_axis and gb_planes_A (grain boundary) or "
                             "neither")
        return self


def _system_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        if "file" in value:
            return "file"
        return value.get("builder") if value.get("builder") in SYSTEM_TAGS else None
    return None


SYSTEM_TAGS = {"file": FileSystem, "cubic_llzo": CubicLLZO,
               "llzo_grain_boundary": GrainBoundary}
BUILDERS = [t for t in SYSTEM_TAGS if t != "file"]
System = Annotated[Annotated[FileSystem, Tag("file")] | Annotated[CubicLLZO, Tag("cubic_llzo")]
                   | Annotated[GrainBoundary, Tag("llzo_grain_boundary")],
                   Discriminator(_system_tag)]


class NoseHoover(_Model):
    """Nosé–Hoover chain (hayabusa.md.NoseHooverChain)."""

    type: Literal["nose_hoover"]
    tau_fs: Positive = 100.0
    chain_length: PositiveInt = 3


class CSVRThermostat(_Model):
    """Stochastic velocity rescaling (hayabusa.md.CSVR)."""

    type: Literal["csvr"]
    tau_fs: Positive = 100.0


class LangevinThermostat(_Model):
    """BAOAB Langevin (hayabusa.md.Langevin)."""

    type: Literal["langevin"]
    friction_per_fs: Positive = 0.01


Thermostat = Annotated[NoseHoover | CSVRThermostat | LangevinThermostat,
                       Field(discriminator="type")]
THERMOSTATS = ("nose_hoover", "csvr", "langevin")


class Relax(_Model):
    """FIRE at fixed cell until the largest force is below ``fmax_eV_per_A``."""

    fmax_eV_per_A: Positive = 0.1
    max_steps: PositiveInt = 200


class ModelFiles(_Model):
    """The potential and what is known about its accuracy."""

    file: str
    metrics_file: str | None = None
    parity_plot_file: str | None = None
    labels: str | None = None

    @model_validator(mode="after")
    def _labels_need_metrics(self):
        if self.labels is not None and self.metrics_file is None:
            raise ValueError("labels describe the metrics of metrics_file; give metrics_file")
        return self


class StudyConfig(_Model):
    """A validated study; paths are absolute (resolved against the config's folder)."""

    model: ModelFiles
    systems: dict[str, System]
    temperatures_K: list[Positive]
    timestep_fs: Positive = 2.0
    equilibration_steps: NonNegativeInt = 0
    production_steps: PositiveInt
    trajectory_every: PositiveInt
    thermo_every: PositiveInt = 100
    checkpoint_every: PositiveInt | None = None
    thermostat: Thermostat = NoseHoover(type="nose_hoover")
    relax: Relax | None = None
    collapse_distance_A: NonNegative = 0.5
    skin_A: NonNegative = 1.0
    neighbor_backend: Literal["auto", "cell", "min_image", "brute", "vesin"] = "auto"
    block_steps: NonNegativeInt = 0
    batch_temperatures: bool = True
    device: Annotated[str, PlainValidator(check_device)] = "auto"
    seed: Annotated[int, Field(strict=True)] = 0

    @model_validator(mode="after")
    def _consistent(self):
        if not self.systems:
            raise ValueError("systems: give at least one system (name: structure)")
        for name in self.systems:
            if not _NAME.fullmatch(name):
                raise ValueError(f"systems.{name}: a system name may hold only letters, digits "
                                 f"and _ (it names the run directories <system>-<T>K)")
        if not self.temperatures_K:
            raise ValueError("temperatures_K: give at least one temperature")
        names = [_temperature_name(t) for t in self.temperatures_K]
        if len(set(names)) != len(names):
            raise ValueError(f"temperatures_K: each temperature once, got {self.temperatures_K}")
        for key in ("production_steps", "equilibration_steps"):
            if getattr(self, key) % self.trajectory_every:
                raise ValueError(f"{key}: must be a multiple of trajectory_every = "
                                 f"{self.trajectory_every}, got {getattr(self, key)}")
        frames = self.production_steps // self.trajectory_every + 1
        if frames < MIN_FRAMES:
            raise ValueError(f"production_steps: {self.production_steps} steps with "
                             f"trajectory_every = {self.trajectory_every} give {frames} frames; "
                             f"the analysis needs at least {MIN_FRAMES}")
        return self


def _min_frames() -> int:
    from .analysis.run import SETTINGS

    return 6 * SETTINGS["n_blocks"]  # analyze_one's minimum: six frames per block


MIN_FRAMES = _min_frames()


def load_study(path) -> StudyConfig:
    """Read and validate a study config; errors are InputError ``FILE: key.path: message``."""
    source = os.fspath(path)
    data = require_mapping(read_yaml(source), source)
    try:
        cfg = StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{source}: {_describe(exc.errors()[0])}") from None
    folder = os.path.dirname(os.path.abspath(source))
    files = {}
    for key in ("file", "metrics_file", "parity_plot_file"):
        value = getattr(cfg.model, key)
        if value is not None:
            files[key] = _existing(os.path.join(folder, value), source, f"model.{key}")
    update: dict[str, Any] = {"model": cfg.model.model_copy(update=files)}
    systems = {}
    for name, spec in cfg.systems.items():
        if isinstance(spec, FileSystem):
            file = _existing(os.path.join(folder, spec.file), source, f"systems.{name}.file")
            spec = spec.model_copy(update={"file": file})
        systems[name] = spec
    update["systems"] = systems
    return cfg.model_copy(update=update)


def _existing(path: str, source: str, key: str) -> str:
    if not os.path.isfile(path):
        raise InputError(f"{source}: {key}: file {path} not found")
    return os.path.normpath(path)


def _describe(error: dict) -> str:
    """One line ``key.path: message`` for a pydantic error."""
    loc = [str(p) for p in error["loc"]]
    if len(loc) >= 3 and loc[0] == "systems" and loc[2] in SYSTEM_TAGS:
        del loc[2]  # the union tag, not a key
    if len(loc) >= 2 and loc[0] == "thermostat" and loc[1] in THERMOSTATS:
        del loc[1]
    kind = error["type"]
    msg = error["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        msg = "unknown key"
    elif kind == "missing":
        msg = "required key missing"
    elif kind in ("union_tag_not_found", "union_tag_invalid"):
        msg = (f"needs file: PATH or builder: {' | '.join(BUILDERS)}" if loc[0] == "systems"
               else f"type: must be {' | '.join(THERMOSTATS)}")
    elif kind != "value_error" and "input" in error:
        msg = f"{msg}, got {error['input']!r}"
    key = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc).lstrip(".")
    return f"{key}: {msg}" if loc else msg


def _temperature_name(t: float) -> str:
    return f"{t:g}K"


# ------------------------------------------------------------------------ structures
@dataclass
class Structure:
    """A built system: its atoms and, for a grain boundary, the normal axis and plane
    positions (Å)."""

    atoms: Any  # ase.Atoms
    gb_normal_axis: int | None = None
    gb_planes_A: list[float] | None = None


def build_system(spec, seed: int) -> Structure:
    """The structure of ``spec`` (a ``systems`` entry)."""
    if isinstance(spec, FileSystem):
        from .builders import read_structure

        return Structure(read_structure(spec.file, spec.index), spec.gb_normal_axis,
                         spec.gb_planes_A)
    from .materials import cubic_llzo, llzo_grain_boundary

    if isinstance(spec, GrainBoundary):
        atoms = llzo_grain_boundary(spec.sigma, spec.plane, spec.lattice_constant_A, seed=seed,
                                    expand_times=spec.expand_times, in_plane=spec.in_plane)
        return Structure(atoms, int(atoms.info["gb_normal_axis"]),
                         [float(z) for z in atoms.info["gb_planes_A"]])
    kwargs = {"tet_occupancy": spec.tet_occupancy} if spec.tet_occupancy is not None else {}
    return Structure(cubic_llzo(spec.lattice_constant_A, seed=seed, supercell=spec.supercell,
                                **kwargs))


# ------------------------------------------------------------------- batched runs
class SystemView:
    """System ``index`` of a batched Simulation, seen as a Simulation of that one system.

    Reporters (ThermoLog, H5MDWriter) read ``state``, ``result``, ``thermo()``,
    ``kinetic_energy()`` and ``performance`` from it; everything else comes from the batch.
    Thermo values are computed once per step for the whole batch.
    """

    def __init__(self, sim, index: int, cache: dict):
        import torch

        self._sim = sim
        self.index = index
        counts = sim.state.n_atoms_per_system.tolist()
        self._atoms = slice(sum(counts[:index]), sum(counts[:index + 1]))
        self._cache = cache
        self._system_idx = torch.zeros(counts[index], dtype=torch.long, device=sim.state.device)

    def __getattr__(self, name):
        return getattr(self._sim, name)

    @property
    def state(self):
        from .state import State

        st, a, s = self._sim.state, self._atoms, slice(self.index, self.index + 1)
        return State(positions=st.positions[a], velocities=st.velocities[a],
                     masses=st.masses[a], atomic_numbers=st.atomic_numbers[a],
                     type_ids=st.type_ids[a], cell=st.cell[s], pbc=st.pbc[s],
                     system_idx=self._system_idx, species=st.species)

    @property
    def result(self):
        from .potentials import PotentialResult

        r, a, s = self._sim.result, self._atoms, slice(self.index, self.index + 1)
        return PotentialResult(energy=r.energy[s], forces=r.forces[a],
                               stress=None if r.stress is None else r.stress[s],
                               atom_energy=None if r.atom_energy is None else r.atom_energy[a])

    def thermo(self) -> dict:
        key = (self._sim.step, id(self._sim.result))
        if self._cache.get("key") != key:
            self._cache.update(key=key, thermo=self._sim.thermo())
        s = slice(self.index, self.index + 1)
        return {k: v[s] for k, v in self._cache["thermo"].items()}

    def kinetic_energy(self):
        return self._sim.kinetic_energy()[self.index:self.index + 1]

    @property
    def performance(self) -> dict | None:
        """The batch's figures, with atom-steps counted for this system's atoms."""
        perf = self._sim.performance
        if perf is None:
            return None
        share = (self._atoms.stop - self._atoms.start) / self._sim.state.n_atoms
        return {**perf, "katom_steps_per_s": perf["katom_steps_per_s"] * share}


class ForSystem:
    """A reporter fed with a SystemView instead of the batched Simulation."""

    def __init__(self, reporter, view: SystemView):
        self.reporter = reporter
        self.view = view
        self.interval = reporter.interval

    def start(self, sim) -> None:
        self.reporter.start(self.view)

    def report(self, sim) -> None:
        self.reporter.report(self.view)

    def finish(self, sim) -> None:
        self.reporter.finish(self.view)


class StudyProgress:
    """One tqdm bar over every MD step of the study; ``show`` None: when stderr is a
    terminal."""

    def __init__(self, total_steps: int, interval: int, show: bool | None = None):
        from tqdm import tqdm

        self.interval = max(1, int(interval))
        show = sys.stderr.isatty() if show is None else show
        self.bar = tqdm(total=total_steps, unit="step", dynamic_ncols=True, disable=not show)
        self._last = 0

    def describe(self, text: str) -> None:
        self.bar.set_description(text)

    def start(self, sim) -> None:
        self._last = sim.step

    def report(self, sim) -> None:
        self.bar.update(sim.step - self._last)
        self._last = sim.step

    def finish(self, sim) -> None:
        self.report(sim)

    def close(self) -> None:
        self.bar.close()


def make_integrator(cfg: StudyConfig, temperatures: list[float], seed: int):
    """The thermostat of ``cfg`` with one target per system of the batch."""
    from .md import CSVR, Langevin, NoseHooverChain

    t = cfg.thermostat
    if isinstance(t, NoseHoover):
        return NoseHooverChain(cfg.timestep_fs, temperatures, t.tau_fs,
                               chain_length=t.chain_length)
    if isinstance(t, CSVRThermostat):
        return CSVR(cfg.timestep_fs, temperatures, t.tau_fs, seed=seed)
    return Langevin(cfg.timestep_fs, temperatures, t.friction_per_fs, seed=seed)


@dataclass
class Batch:
    """One batched MD job: system number ``system_index`` at the temperatures numbered
    ``temperature_indices`` in the config."""

    system: str
    system_index: int
    temperatures: list[float]
    temperature_indices: list[int]

    @property
    def run_names(self) -> list[str]:
        return [f"{self.system}-{_temperature_name(t)}" for t in self.temperatures]

    @property
    def name(self) -> str:
        return self.system if len(self.temperatures) > 1 else self.run_names[0]

    def seed(self, base: int, k: int) -> int:
        """The velocity seed of run ``k``: fixed by system and temperature, so a run draws
        the same velocities batched or alone."""
        return base + 1000 * (self.system_index + 1) + self.temperature_indices[k]


def plan(cfg: StudyConfig) -> list[Batch]:
    """The batches of the study, in config order."""
    temps = list(enumerate(cfg.temperatures_K))
    groups = [temps] if cfg.batch_temperatures else [[t] for t in temps]
    return [Batch(system, i, [t for _, t in group], [k for k, _ in group])
            for i, system in enumerate(cfg.systems) for group in groups]


def run_batch(batch: Batch, structure: Structure, model, cfg: StudyConfig, out: Path, device,
              progress: StudyProgress | None = None) -> dict:
    """Equilibrate and run production for ``batch``; writes each run directory. Returns
    {"steps", "seconds" (both phases), "ns_per_day" (per system), "katom_steps_per_s"}."""
    import ase.io
    import torch

    from .md import CheckpointWriter, Simulation, ThermoLog, maxwell_boltzmann
    from .md.trajectory import H5MDWriter
    from .state import State

    n = len(batch.temperatures)
    atoms = structure.atoms
    velocities = []
    for k, temp in enumerate(batch.temperatures):
        one = State.from_atoms(atoms, device=device, species=model.species)
        velocities.append(maxwell_boltzmann(one, temp, "metal", seed=batch.seed(cfg.seed, k))
                          .velocities)
    state = State.from_atoms([atoms] * n, device=device, species=model.species)
    state.velocities = torch.cat(velocities)
    # a stochastic thermostat draws for the whole batch: one seed per batch
    integrator = make_integrator(cfg, batch.temperatures, batch.seed(cfg.seed, 0) + 500)
    sim = Simulation(state, model, integrator, "metal", skin=cfg.skin_A,
                     neighbor_backend=cfg.neighbor_backend, block_steps=cfg.block_steps)
    cache: dict = {}
    logs, trajs = [], []
    for s, (name, temp) in enumerate(zip(batch.run_names, batch.temperatures, strict=True)):
        run_dir = out / name
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(run_dir / START_NAME,
                     lambda tmp: ase.io.write(tmp, atoms, format="extxyz"))
        meta = {"system": batch.system, "temperature_K": float(temp),
                "timestep_fs": cfg.timestep_fs, "n_atoms": len(atoms),
                "equilibration_steps": cfg.equilibration_steps,
                "production_steps": cfg.production_steps,
                "trajectory_every": cfg.trajectory_every,
                "thermostat": cfg.thermostat.model_dump(), "model_file": cfg.model.file,
                "velocity_seed": batch.seed(cfg.seed, s),
                "batch": {"name": batch.name, "system_index": s, "n_systems": n}}
        if structure.gb_planes_A is not None:
            meta.update(gb_normal_axis=structure.gb_normal_axis,
                        gb_planes_A=[float(z) for z in structure.gb_planes_A])
        text = json.dumps(meta, indent=1)
        write_atomic(run_dir / RUN_JSON_NAME, lambda tmp, t=text: tmp.write_text(t))
        view = SystemView(sim, s, cache)
        logs.append(ForSystem(ThermoLog(cfg.thermo_every, path=run_dir / LOG_NAME,
                                        stream=None), view))
        trajs.append(ForSystem(H5MDWriter(run_dir / TRAJ_NAME, cfg.trajectory_every), view))
    ckpt = out / CHECKPOINT_DIR / f"{batch.name}.pt"
    total = cfg.equilibration_steps + cfg.production_steps
    extra = [progress] if progress is not None else []
    checkpoints = CheckpointWriter(ckpt, cfg.checkpoint_every or max(1, total))
    seconds = 0.0
    if cfg.equilibration_steps:
        if progress is not None:
            progress.describe(f"{batch.name} equilibration")
        sim.reporters = [*logs, checkpoints, *extra]
        sim.run(cfg.equilibration_steps)
        seconds += sim.performance["loop_time_s"]
    if progress is not None:
        progress.describe(f"{batch.name} production")
    if sim.step > 0:  # first frame: the equilibrated state (at step 0 run() reports it)
        for writer in trajs:
            writer.report(sim)
    sim.reporters = [*logs, *trajs, checkpoints, *extra]
    sim.run(cfg.production_steps)
    seconds += sim.performance["loop_time_s"]
    if cfg.collapse_distance_A > 0:
        check_collapse(sim.state, batch.run_names, out, cfg.collapse_distance_A)
    rate = total / seconds
    return {"steps": total, "seconds": seconds, "ns_per_day": rate * cfg.timestep_fs * 0.0864,
            "katom_steps_per_s": rate * state.n_atoms / 1e3}


def collapsed_pair(atoms, limit: float) -> str | None:
    """A description of the closest pair of ``atoms`` if it is nearer than ``limit`` Å
    (minimum image), else None."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, limit)
    if not len(d):
        return None
    k = int(d.argmin())
    sym = atoms.get_chemical_symbols()
    return (f"atoms {i[k]} ({sym[i[k]]}) and {j[k]} ({sym[j[k]]}) are {d[k]:.2f} Å apart "
            f"({len(d) // 2} pair(s) closer than collapse_distance_A = {limit:g} Å): the "
            f"potential let atoms collapse")


def check_collapse(state, names: list[str], out: Path, limit: float) -> None:
    """SimulationError naming the run and the atoms if two atoms of a finished run are
    closer than ``limit`` Å."""
    for name, atoms in zip(names, state.to_atoms(), strict=True):
        pair = collapsed_pair(atoms, limit)
        if pair is not None:
            raise SimulationError(f"{name}: at the end of the run {pair}, so the run is "
                                  f"unphysical; its trajectory is in {out / name}")


def relax(structure: Structure, model, cfg: StudyConfig, device) -> tuple[bool, int, float]:
    """FIRE at fixed cell, in place; (converged, steps, largest force eV/Å)."""
    from .md import FIRE
    from .state import State

    state = State.from_atoms(structure.atoms, device=device, species=model.species)
    fire = FIRE(state, model, "metal", fmax=cfg.relax.fmax_eV_per_A, skin=cfg.skin_A,
                neighbor_backend=cfg.neighbor_backend)
    converged = fire.run(cfg.relax.max_steps)
    structure.atoms.positions = state.positions.detach().cpu().double().numpy()
    return converged, fire.n_steps, float(fire.max_force.max())


# ------------------------------------------------------------------------- outputs
def earlier_results(out: Path, overwrite: bool) -> list[Path]:
    """The results of an earlier study in ``out`` (run directories holding a run.json and the
    names in STUDY_OUTPUTS); InputError naming ``out`` if there are any and not ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    old = sorted(p for p in (out.iterdir() if out.is_dir() else ())
                 if p.name in STUDY_OUTPUTS or (p / RUN_JSON_NAME).is_file())
    if old and not overwrite:
        names = ", ".join(p.name for p in old[:4]) + (", …" if len(old) > 4 else "")
        raise InputError(f"{out} holds results of an earlier study ({names}); pass --overwrite "
                         f"to replace them or --output to choose another directory")
    return old


def model_metrics(model: ModelFiles, metadata: dict | None = None) -> dict | None:
    """The test metrics of ``model.metrics_file`` ({"energy_meV_per_atom": {"mae", "rmse"},
    …}, from its "test" entry if it has one) and the labels sentence: ``model.labels``, else
    the file's "labels", else the model file's ``metadata["labels"]``."""
    if model.metrics_file is None:
        return None
    path = model.metrics_file
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the model metrics ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object of metrics")
    test = data.get("test", data)
    metrics = {k: v for k, v in test.items() if isinstance(v, dict) and "mae" in v} \
        if isinstance(test, dict) else {}
    if not metrics:
        raise InputError(f"{path}: no test metrics (expected a 'test' entry or entries like "
                         f"'forces_meV_per_A': {{'mae': …, 'rmse': …}})")
    labels = model.labels or data.get("labels") or (metadata or {}).get("labels")
    if labels:
        metrics["labels"] = str(labels)
    return metrics


def _copy(src: str, dst: Path) -> None:
    data = Path(src).read_bytes()
    write_atomic(dst, lambda tmp: tmp.write_bytes(data))


def _check_species(where: str, atoms, model) -> None:
    from ase.data import chemical_symbols

    known = {int(z) for z in model.species}
    missing = sorted({int(z) for z in atoms.numbers} - known)
    if missing:
        raise InputError(f"{where}: element(s) "
                         f"{', '.join(chemical_symbols[z] for z in missing)} not among the "
                         f"model's species {[chemical_symbols[z] for z in sorted(known)]}")


def run_study(config_path, output=None, overwrite: bool = False, device: str | None = None,
              progress_bar: bool | None = None) -> Path:
    """Run the study of ``config_path`` into ``output`` (default ``runs/<config stem>``);
    returns the path of report.html. ``progress_bar``: None shows it on a terminal."""
    from . import load_model
    from .analysis.run import analyze_run
    from .config import resolve_device
    from .viz.report import write_report

    cfg = load_study(config_path)
    if device is not None:
        try:
            cfg = cfg.model_copy(update={"device": check_device(device)})
        except ValueError as exc:
            raise InputError(f"--device: {exc}") from None
    out = Path(output) if output is not None else Path("runs") / Path(config_path).stem
    old = earlier_results(out, overwrite)
    dev = resolve_device(cfg.device)
    model = load_model(cfg.model.file, device=dev)
    metrics = model_metrics(cfg.model, getattr(model, "metadata", None))
    structures = {}
    for k, (name, spec) in enumerate(cfg.systems.items()):
        try:
            structures[name] = build_system(spec, cfg.seed + k)
        except InputError as exc:
            raise InputError(f"{config_path}: systems.{name}: {exc}") from None
        _check_species(f"{config_path}: systems.{name}", structures[name].atoms, model)
    prepare_output(out, old)
    _copy(config_path, out / CONFIG_NAME)
    if metrics is not None:
        text = json.dumps(metrics, indent=1)
        write_atomic(out / METRICS_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    if cfg.model.parity_plot_file is not None:
        _copy(cfg.model.parity_plot_file, out / PARITY_NAME)

    batches = plan(cfg)
    per_batch = cfg.equilibration_steps + cfg.production_steps
    progress = StudyProgress(per_batch * len(batches), max(10, cfg.block_steps), progress_bar)
    t0 = time.perf_counter()
    try:
        for name, structure in structures.items():
            if cfg.relax is not None:
                progress.describe(f"{name} FIRE")
                converged, steps, fmax = relax(structure, model, cfg, dev)
                _say(progress, f"{name}: FIRE {'converged' if converged else 'stopped'} after "
                     f"{steps} steps, max force {fmax:.3g} eV/Å")
                pair = cfg.collapse_distance_A > 0 and \
                    collapsed_pair(structure.atoms, cfg.collapse_distance_A)
                if pair:
                    raise SimulationError(f"systems.{name}: after {steps} FIRE steps {pair}")
            for batch in (b for b in batches if b.system == name):
                n_atoms = len(structure.atoms) * len(batch.temperatures)
                perf = run_batch(batch, structure, model, cfg, out, dev, progress)
                _say(progress, f"{batch.name}: {len(batch.temperatures)} × "
                     f"{len(structure.atoms)} atoms ({n_atoms} in the batch), {perf['steps']} "
                     f"steps in {perf['seconds']:.1f} s ({perf['ns_per_day']:.3g} ns/day, "
                     f"{perf['katom_steps_per_s']:.3g} katom-step/s)")
    finally:
        progress.close()
    t1 = time.perf_counter()
    print(f"MD done in {t1 - t0:.0f} s; analysing …", flush=True)
    analyze_run(out, overwrite=True)
    t2 = time.perf_counter()
    report = write_report(out, overwrite=True)
    print(f"analysis {t2 - t1:.0f} s, report {time.perf_counter() - t2:.0f} s", flush=True)
    return report


def _say(progress: StudyProgress, text: str) -> None:
    progress.bar.write(text, file=sys.stdout)


# ------------------------------------------------------------------------------ CLI
def _cmd_study(args) -> int:
    report = run_study(args.config, args.output, args.overwrite, args.device)
    print(f"Report: {report}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("study", help="LLZO study: MD at several temperatures, analysis, report",
                       description="Build the systems of CONFIG.yaml, run NVT MD at every "
                                   "temperature (one batched State per system), analyse the "
                                   "runs and write an HTML report.")
    p.add_argument("config", metavar="CONFIG.yaml", help="study configuration (YAML)")
    p.add_argument("--output", "-o", metavar="DIR",
                   help="run directory (default: runs/<config stem>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier study in the run directory")
    p.add_argument("--device", help="override the config's device (auto, cpu, cuda, cuda:N)")
    p.set_defaults(func=_cmd_study)
