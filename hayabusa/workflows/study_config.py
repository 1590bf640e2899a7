"""The study config (``hayabusa study CONFIG.yaml``): a YAML file validated into typed objects,
and the plan of batched MD jobs it makes.

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
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    ValidationError,
    model_validator,
)

from ..config import (
    NonNegative,
    NonNegativeInt,
    Positive,
    PositiveInt,
    StrictModel,
    check_device,
    read_yaml,
    require_mapping,
)
from ..errors import InputError

_NAME = re.compile(r"[A-Za-z0-9_]+")


def _supercell(value: Any) -> int | tuple[int, int, int]:
    reps = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(reps) not in (1, 3) or not all(isinstance(r, int) and not isinstance(r, bool)
                                          and r >= 1 for r in reps):
        raise ValueError(f"expected a positive integer or a list of three, got {value!r}")
    return reps[0] if len(reps) == 1 else tuple(reps)


class CubicLLZO(StrictModel):
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


class GrainBoundary(StrictModel):
    """LLZO symmetric tilt bicrystal (hayabusa.materials.llzo_grain_boundary)."""

    builder: Literal["llzo_grain_boundary"]
    sigma: PositiveInt = 5
    plane: Annotated[tuple[int, int, int], _ints(3)] = (3, 1, 0)
    lattice_constant_A: Positive = 12.97
    expand_times: PositiveInt = 1
    in_plane: Annotated[tuple[int, int], _ints(2)] = (1, 1)


class FileSystem(StrictModel):
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


class NoseHooverSettings(StrictModel):
    """Nosé–Hoover chain (hayabusa.md.NoseHooverChain)."""

    type: Literal["nose_hoover"]
    tau_fs: Positive = 100.0
    chain_length: PositiveInt = 3


class CSVRSettings(StrictModel):
    """Stochastic velocity rescaling (hayabusa.md.CSVR)."""

    type: Literal["csvr"]
    tau_fs: Positive = 100.0


class LangevinSettings(StrictModel):
    """BAOAB Langevin (hayabusa.md.Langevin)."""

    type: Literal["langevin"]
    friction_per_fs: Positive = 0.01


ThermostatSettings = Annotated[NoseHooverSettings | CSVRSettings | LangevinSettings,
                              Field(discriminator="type")]
THERMOSTATS = ("nose_hoover", "csvr", "langevin")


class Relax(StrictModel):
    """FIRE at fixed cell until the largest force is below ``fmax_eV_per_A``."""

    fmax_eV_per_A: Positive = 0.1
    max_steps: PositiveInt = 200


class ModelFiles(StrictModel):
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


class StudyConfig(StrictModel):
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
    thermostat: ThermostatSettings = NoseHooverSettings(type="nose_hoover")
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
    from ..analysis.run import SETTINGS

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


@dataclass
class TemperatureBatch:
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


def plan(cfg: StudyConfig) -> list[TemperatureBatch]:
    """The batches of the study, in config order."""
    temps = list(enumerate(cfg.temperatures_K))
    groups = [temps] if cfg.batch_temperatures else [[t] for t in temps]
    return [TemperatureBatch(system, i, [t for _, t in group], [k for k, _ in group])
            for i, system in enumerate(cfg.systems) for group in groups]
