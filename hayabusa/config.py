"""Run configuration: a YAML file validated into typed objects.

Every key that has a unit names it, with the suffix of the run's unit system (``units:``):

  dimension        metal suffix   lj suffix   keys
  time             _fs            _lj         timestep, tau
  temperature      _K             _lj         temperature
  length           _A             _lj         lattice_constant, sigma, cutoff, r0, skin
  energy           _eV            _lj         epsilon, D
  1/time           _per_fs        _lj         friction
  1/length         _per_A         _lj         alpha
  force            _eV_per_A      _lj         fmax
  mass             _amu           _lj         mass
  number density   _per_A3        _lj         density (atoms per length³)

A key without its unit (``timestep``) or with the other system's unit (``timestep_fs`` with
``units: lj``) is an error naming the right key. After validation the typed objects hold plain
numbers in the run's units, under the bare names (``cfg.integrator.timestep``).

Schema (``?`` optional, ``=`` default)::

  units: metal | lj
  device: auto | cpu | cuda[:N]        = auto (cuda when available)
  dtype: float64 | float32             = float64
  seed: int                            = 0
  structure:  file: PATH, index: int = -1, mass?          (PATH relative to the config file)
          or  builder: fcc | sc | bcc, n_cells: int | [nx, ny, nz],
              density | lattice_constant, symbol = Ar, mass?   (lj: mass = 1)
          or  builder: kob_andersen, n_atoms, density = 1.2, fraction_a = 0.8   (lj only)
  potential:  type: lennard_jones, epsilon, sigma, cutoff, truncation = shift, species?
          or  type: morse, D, alpha, r0, cutoff, truncation = shift, species?
          or  type: kob_andersen, truncation = shift_force                      (lj only)
          or  type: model, file: PATH     a trained model (metal only; PATH relative to the config)
              (parameters are numbers or symmetric per-type-pair matrices; with matrices,
              ``species`` lists the symbols in type order)
  velocities?: temperature, remove_com = true          (Maxwell–Boltzmann)
  minimize?:   fmax, max_steps = 1000                  (FIRE, before velocities)
  integrator: type: nve | langevin | nose_hoover | csvr, timestep,
              temperature (thermostats), friction (langevin), tau (nose_hoover, csvr),
              chain_length = 3 (nose_hoover)
  run:        steps                                    (total steps; a restart runs the rest)
  neighbors?: skin = 2 Å | 0.3 σ, backend: cell | brute | vesin = cell
  output?:    thermo_every = 100, checkpoint_every?,
              trajectory?: {every, format: extxyz | h5md, path = trajectory.extxyz|.h5}

Any invalid file raises ``InputError`` with one line ``FILE: key.path: what is wrong``.
"""

from __future__ import annotations

import math
import os
import re
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from .errors import InputError

UNITS = ("metal", "lj")

#: unit suffix of each dimension in each unit system
SUFFIXES: dict[str, dict[str, str]] = {
    "time": {"metal": "fs", "lj": "lj"},
    "temperature": {"metal": "K", "lj": "lj"},
    "length": {"metal": "A", "lj": "lj"},
    "energy": {"metal": "eV", "lj": "lj"},
    "inverse_time": {"metal": "per_fs", "lj": "lj"},
    "inverse_length": {"metal": "per_A", "lj": "lj"},
    "force": {"metal": "eV_per_A", "lj": "lj"},
    "mass": {"metal": "amu", "lj": "lj"},
    "number_density": {"metal": "per_A3", "lj": "lj"},
}

def unit_key(name: str, dimension: str, units: str) -> str:
    """The config key of quantity ``name`` in ``units``, e.g. ('timestep', 'time', 'lj')."""
    return f"{name}_{SUFFIXES[dimension][units]}"


# ----------------------------------------------------------------------------- value types
def _positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a positive number, got {value!r}")
    if not value > 0:
        raise ValueError(f"must be > 0, got {value!r}")
    return float(value)


def _non_negative(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number >= 0, got {value!r}")
    if not value >= 0:
        raise ValueError(f"must be >= 0, got {value!r}")
    return float(value)


def check_device(value: Any) -> str:
    """``value`` if it names a device (auto, cpu, cuda, cuda:N); else ValueError."""
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {value!r}")
    return value


def resolve_device(name: str):
    """The torch device for a checked name (auto: CUDA when torch sees a GPU, else CPU)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device: {name} requested but torch sees no CUDA GPU; "
                             "use device: cpu or auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise InputError(f"device: {name} requested but only {torch.cuda.device_count()} "
                             "CUDA GPU(s) are visible")
    return torch.device(name)


def device_option(option: str | None, default: str = "auto"):
    """The torch device of a ``--device`` option, or of ``default`` (a config's checked
    ``device``) when it is not given; a bad option is an InputError naming ``--device``."""
    if option is None:
        return resolve_device(default)
    try:
        return resolve_device(check_device(option))
    except ValueError as exc:
        raise InputError(f"--device: {exc}") from None


def _pair_parameter(value: Any) -> float | list[list[float]]:
    """A positive number, or a square symmetric matrix of them (one entry per type pair)."""
    if isinstance(value, list):
        n = len(value)
        if n == 0 or not all(isinstance(row, list) and len(row) == n for row in value):
            raise ValueError(f"expected a number or a square matrix (list of rows), got {value!r}")
        matrix = [[_positive(x) for x in row] for row in value]
        if any(matrix[i][j] != matrix[j][i] for i in range(n) for j in range(n)):
            raise ValueError(f"the per-type-pair matrix must be symmetric, got {value!r}")
        return matrix
    return _positive(value)


def _n_cells(value: Any) -> tuple[int, int, int]:
    reps = [value] * 3 if not isinstance(value, list) else value
    if len(reps) != 3 or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1
                                 for r in reps):
        raise ValueError(f"expected a positive integer or a list of three, got {value!r}")
    return tuple(reps)


Positive = Annotated[float, PlainValidator(_positive)]
PairParameter = Annotated[Any, PlainValidator(_pair_parameter)]
PositiveInt = Annotated[int, Field(strict=True, ge=1)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
NonNegative = Annotated[float, PlainValidator(_non_negative)]


class StrictModel(BaseModel):
    """Base of every config schema: unknown keys are errors; values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class UnitSection(StrictModel):
    """An md-config section: ``quantities`` maps field name → dimension (unit-suffixed
    keys)."""

    quantities: ClassVar[dict[str, str]] = {}

    @classmethod
    def key(cls, field: str, units: str) -> str:
        """The config key of ``field`` (with its unit suffix when it has a unit)."""
        dim = cls.quantities.get(field)
        return unit_key(field, dim, units) if dim else field


def _units(info: ValidationInfo) -> str:
    return (info.context or {}).get("units", "metal")


# ------------------------------------------------------------------------------- structure
class FileStructure(UnitSection):
    """Read frame ``index`` of ``file`` (any ASE format); ``mass`` overrides every mass."""

    quantities: ClassVar = {"mass": "mass"}
    file: str
    index: int = -1
    mass: Positive | None = None


class LatticeStructure(UnitSection):
    """A cubic lattice of ``n_cells`` cells at ``density`` or ``lattice_constant``."""

    quantities: ClassVar = {"density": "number_density", "lattice_constant": "length",
                            "mass": "mass"}
    builder: Literal["fcc", "sc", "bcc"]
    n_cells: Annotated[tuple[int, int, int], PlainValidator(_n_cells)]
    density: Positive | None = None
    lattice_constant: Positive | None = None
    symbol: str = "Ar"
    mass: Positive | None = None

    @model_validator(mode="after")
    def _one_size(self, info: ValidationInfo):
        if (self.density is None) == (self.lattice_constant is None):
            u = _units(info)
            raise ValueError(f"give exactly one of {self.key('density', u)} or "
                             f"{self.key('lattice_constant', u)}")
        return self


class KobAndersenStructure(UnitSection):
    """The Kob–Andersen 80:20 mixture of ``n_atoms`` at ``density`` (reduced units)."""

    quantities: ClassVar = {"density": "number_density"}
    builder: Literal["kob_andersen"]
    n_atoms: Annotated[int, Field(strict=True, ge=2)]
    density: Positive = 1.2
    fraction_a: Annotated[float, Field(gt=0, lt=1)] = 0.8


def _structure_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        if "file" in value:
            return "file"
        builder = value.get("builder")
        if builder in ("fcc", "sc", "bcc"):
            return "lattice"
        if builder == "kob_andersen":
            return "kob_andersen"
    return None


Structure = Annotated[
    Annotated[FileStructure, Tag("file")]
    | Annotated[LatticeStructure, Tag("lattice")]
    | Annotated[KobAndersenStructure, Tag("kob_andersen")],
    Discriminator(_structure_tag),
]
STRUCTURE_TAGS = {"file": FileStructure, "lattice": LatticeStructure,
                  "kob_andersen": KobAndersenStructure}

# ------------------------------------------------------------------------------- potential
Truncation = Literal["none", "shift", "shift_force"]
Precision = Literal["float64", "float32"]


class _PairPotential(UnitSection):
    species: list[str] | None = None

    @model_validator(mode="after")
    def _matrix_sizes(self, info: ValidationInfo):
        sizes = {name: len(getattr(self, name)) for name in self.quantities
                 if isinstance(getattr(self, name), list)}
        u = _units(info)
        if sizes and self.species is None:
            raise ValueError(f"per-type-pair matrices ({', '.join(self.key(n, u) for n in sizes)})"
                             " need species: [symbols in type order]")
        if self.species is not None:
            for name, size in sizes.items():
                if size != len(self.species):
                    raise ValueError(f"{self.key(name, u)} is {size}x{size} but species lists "
                                     f"{len(self.species)} symbols")
        return self


class LennardJonesPotential(_PairPotential):
    """u(r) = 4ε[(σ/r)¹² − (σ/r)⁶] cut at ``cutoff``."""

    quantities: ClassVar = {"epsilon": "energy", "sigma": "length", "cutoff": "length"}
    type: Literal["lennard_jones"]
    epsilon: PairParameter
    sigma: PairParameter
    cutoff: PairParameter
    truncation: Truncation = "shift"
    precision: Precision = "float64"


class MorsePotential(_PairPotential):
    """u(r) = D[e^{−2α(r−r0)} − 2e^{−α(r−r0)}] cut at ``cutoff``."""

    quantities: ClassVar = {"D": "energy", "alpha": "inverse_length", "r0": "length",
                            "cutoff": "length"}
    type: Literal["morse"]
    D: PairParameter
    alpha: PairParameter
    r0: PairParameter
    cutoff: PairParameter
    truncation: Truncation = "shift"
    precision: Precision = "float64"


class KobAndersenPotential(UnitSection):
    """The Kob–Andersen binary LJ mixture (type 0 = A, 1 = B), r_c = 2.5 σ_αβ."""

    type: Literal["kob_andersen"]
    truncation: Truncation = "shift_force"
    precision: Precision = "float64"


class ModelFilePotential(UnitSection):
    """A trained model file (``hayabusa train``'s model.pt, metal units); its species give
    the type order."""

    type: Literal["model"]
    file: str


Potential = Annotated[LennardJonesPotential | MorsePotential | KobAndersenPotential
                      | ModelFilePotential, Field(discriminator="type")]
POTENTIAL_TAGS = {"lennard_jones": LennardJonesPotential, "morse": MorsePotential,
                  "kob_andersen": KobAndersenPotential, "model": ModelFilePotential}


# ------------------------------------------------------------------------- md and minimizer
class Velocities(UnitSection):
    """Maxwell–Boltzmann velocities at ``temperature``; ``remove_com`` zeroes the momentum."""

    quantities: ClassVar = {"temperature": "temperature"}
    temperature: NonNegative
    remove_com: bool = True


class Minimize(UnitSection):
    """FIRE minimisation until the largest atomic force (its norm) is below ``fmax``."""

    quantities: ClassVar = {"fmax": "force"}
    fmax: Positive
    max_steps: PositiveInt = 1000


class NVE(UnitSection):
    """Velocity Verlet."""

    quantities: ClassVar = {"timestep": "time"}
    type: Literal["nve"]
    timestep: Positive


class LangevinIntegrator(UnitSection):
    """Langevin dynamics with ``friction`` (1/time)."""

    quantities: ClassVar = {"timestep": "time", "temperature": "temperature",
                            "friction": "inverse_time"}
    type: Literal["langevin"]
    timestep: Positive
    temperature: NonNegative
    friction: Positive


class NoseHooverIntegrator(UnitSection):
    """Nosé–Hoover chain thermostat with relaxation time ``tau``."""

    quantities: ClassVar = {"timestep": "time", "temperature": "temperature", "tau": "time"}
    type: Literal["nose_hoover"]
    timestep: Positive
    temperature: Positive
    tau: Positive
    chain_length: PositiveInt = 3


class CSVRIntegrator(UnitSection):
    """Bussi–Donadio–Parrinello stochastic velocity rescaling with relaxation time ``tau``."""

    quantities: ClassVar = {"timestep": "time", "temperature": "temperature", "tau": "time"}
    type: Literal["csvr"]
    timestep: Positive
    temperature: Positive
    tau: Positive


Integrator = Annotated[NVE | LangevinIntegrator | NoseHooverIntegrator | CSVRIntegrator,
                       Field(discriminator="type")]
INTEGRATOR_TAGS = {"nve": NVE, "langevin": LangevinIntegrator,
                   "nose_hoover": NoseHooverIntegrator, "csvr": CSVRIntegrator}


class Run(UnitSection):
    """``steps``: total number of MD steps; ``block_steps``: steps run without host syncs
    between neighbor-list checks (one CUDA graph on a GPU); 0 checks every step."""

    steps: NonNegativeInt
    block_steps: NonNegativeInt = 0


class Neighbors(UnitSection):
    """Verlet ``skin`` (length; None: the Simulation's default, 2 Å or 0.3 σ) and backend."""

    quantities: ClassVar = {"skin": "length"}
    skin: NonNegative | None = None
    backend: Literal["auto", "cell", "min_image", "brute", "vesin"] = "auto"


class TrajectoryOutput(UnitSection):
    """Frames every ``every`` steps to ``path`` (relative to the output directory)."""

    every: PositiveInt
    format: Literal["extxyz", "h5md"] | None = None
    path: str | None = None

    @model_validator(mode="after")
    def _defaults(self):
        fmt = self.format
        if fmt is None:
            is_h5 = self.path is not None and self.path.endswith((".h5", ".h5md", ".hdf5"))
            fmt = "h5md" if is_h5 else "extxyz"
        path = self.path or ("trajectory.h5" if fmt == "h5md" else "trajectory.extxyz")
        object.__setattr__(self, "format", fmt)
        object.__setattr__(self, "path", path)
        return self


class Output(UnitSection):
    """Thermo lines every ``thermo_every`` steps; optional trajectory and checkpoints."""

    thermo_every: PositiveInt = 100
    trajectory: TrajectoryOutput | None = None
    checkpoint_every: PositiveInt | None = None


# ---------------------------------------------------------------------------------- config
class Config(UnitSection):
    """A validated run configuration; numbers are in the units of ``units``."""

    units: Literal["metal", "lj"]
    device: Annotated[str, PlainValidator(check_device)] = "auto"
    dtype: Literal["float64", "float32"] = "float64"
    seed: Annotated[int, Field(strict=True)] = 0
    structure: Structure
    potential: Potential
    velocities: Velocities | None = None
    minimize: Minimize | None = None
    integrator: Integrator
    run: Run
    neighbors: Neighbors = Neighbors()
    output: Output = Output()

    @model_validator(mode="after")
    def _reduced_only(self):
        for section, value, what in (("structure", self.structure, "builder"),
                                     ("potential", self.potential, "type")):
            if getattr(value, what, None) == "kob_andersen" and self.units != "lj":
                raise ValueError(f"{section}.{what}: kob_andersen is defined in reduced units; "
                                 f"set units: lj")
        if self.potential.type == "model" and self.units != "metal":
            raise ValueError("potential.type: model files are in metal units (Å, eV); set "
                             "units: metal")
        return self


#: models that may appear in each top-level section (unions list every member)
SECTIONS: dict[str, dict[str, type[UnitSection]]] = {
    "structure": STRUCTURE_TAGS,
    "potential": POTENTIAL_TAGS,
    "velocities": {"": Velocities},
    "minimize": {"": Minimize},
    "integrator": INTEGRATOR_TAGS,
    "run": {"": Run},
    "neighbors": {"": Neighbors},
    "output": {"": Output},
}
_UNION_SECTIONS = {"structure", "potential", "integrator"}


# --------------------------------------------------------------------------------- loading
def load_config(path: str | os.PathLike) -> Config:
    """Read and validate a YAML config; ``structure.file`` and ``potential.file`` are resolved
    against its folder."""
    source = os.fspath(path)
    config = parse_config(read_yaml(source), source)
    for section in ("structure", "potential"):
        value = getattr(config, section)
        if isinstance(value, (FileStructure, ModelFilePotential)) and \
                not os.path.isabs(value.file):
            resolved = os.path.join(os.path.dirname(source), value.file)
            config = config.model_copy(update={section: value.model_copy(
                update={"file": resolved})})
    return config


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads ``1e-3``, ``5e+3`` and ``1.0e6`` as floats (YAML
    1.2; YAML 1.1 wants a dot and a signed exponent and PyYAML reads them as strings)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"))


def read_yaml(path) -> Any:
    """The YAML document in ``path`` (read by ``YamlLoader``); a missing, unreadable or
    malformed file, or a non-finite number (.inf, .nan) anywhere in it, is an InputError
    naming the file (and the line of a YAML error or the key of the number)."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=YamlLoader)
    except FileNotFoundError:
        raise InputError(f"{source}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{source}: cannot read config: {exc}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: invalid YAML: {_yaml_message(exc)}") from None
    _check_finite(data, source)
    return data


def _check_finite(data: Any, source: str, key: str = "") -> None:
    """InputError ``SOURCE: key.path: must be a finite number`` for the first inf or NaN."""
    if isinstance(data, float) and not math.isfinite(data):
        raise InputError(f"{source}: {key or '(top level)'}: must be a finite number, "
                         f"got {data}")
    if isinstance(data, dict):
        for name, value in data.items():
            _check_finite(value, source, f"{key}.{name}" if key else str(name))
    elif isinstance(data, list):
        for k, value in enumerate(data):
            _check_finite(value, source, f"{key}[{k}]")


def require_mapping(data: Any, source: str) -> dict:
    """``data`` if it is a mapping of config keys, else an InputError naming ``source``."""
    if not isinstance(data, dict):
        what = "an empty file" if data is None else f"a {type(data).__name__}"
        raise InputError(f"{source}: expected a mapping of config keys, got {what}")
    return data


def parse_config(data: Any, source: str = "<config>") -> Config:
    """Validate a parsed YAML document; errors are InputError ``SOURCE: key.path: message``."""
    require_mapping(data, source)
    units = data.get("units")
    if units is None:
        raise InputError(f"{source}: units: required key missing — use units: metal or units: lj")
    if units not in UNITS:
        raise InputError(f"{source}: units: must be metal or lj, got {units!r}")
    data, renames = _normalize_units(data, units, source)
    try:
        return Config.model_validate(data, context={"units": units})
    except ValidationError as exc:
        first = min(exc.errors(), key=lambda e: _position(data, e["loc"]))
        raise InputError(f"{source}: {_describe(first, units, renames)}") from None


def _position(data: Any, loc) -> list[int]:
    """Where the key of an error sits in the file (to report the first problem first)."""
    order = []
    for part in loc:
        if isinstance(data, dict):
            keys = list(data)
            if part not in keys:  # a union tag or a missing key
                order.append(len(keys))
                continue
            order.append(keys.index(part))
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int):
            order.append(part)
            data = data[part] if part < len(data) else None
        else:
            order.append(0)
    return order


def _normalize_units(data: dict, units: str, source: str):
    """Rename ``name_<suffix>`` keys to ``name``; reject bare and wrong-unit keys."""
    out = dict(data)
    renames: dict[tuple[str, str], str] = {}
    for section, models in SECTIONS.items():
        raw = data.get(section)
        if not isinstance(raw, dict):
            continue
        quantities: dict[str, str] = {}
        for model in models.values():
            quantities.update(model.quantities)
        new = {}
        for key, value in raw.items():
            name = _rename(section, str(key), quantities, units, source)
            if name != key:
                if name in new:
                    raise InputError(f"{source}: {section}.{key}: given twice (also as "
                                     f"{renames.get((section, name), name)})")
                renames[(section, name)] = key
            new[name] = value
        out[section] = new
    return out, renames


def _rename(section: str, key: str, quantities: dict[str, str], units: str, source: str) -> str:
    for name, dim in quantities.items():
        right = unit_key(name, dim, units)
        options = " or ".join(f"{unit_key(name, dim, u)} ({u})" for u in UNITS)
        if key == right:
            return name
        if key == name:
            raise InputError(f"{source}: {section}.{key}: needs a unit — use {options}")
        if key.startswith(name + "_"):
            other = [u for u in UNITS if u != units and key == unit_key(name, dim, u)]
            if other:
                raise InputError(f"{source}: {section}.{key}: that is the {other[0]} unit but "
                                 f"units is {units} — use {right}")
            raise InputError(f"{source}: {section}.{key}: unknown unit — use {options}")
    return key


def _describe(error: dict, units: str, renames: dict) -> str:
    """One line ``key.path: message`` for a pydantic error."""
    loc = list(error["loc"])
    kind = error["type"]
    section_model = None
    if len(loc) >= 2 and loc[0] in _UNION_SECTIONS and str(loc[1]) in SECTIONS[loc[0]]:
        section_model = SECTIONS[loc[0]][str(loc[1])]  # loc[1] is the union tag, not a key
        loc = [loc[0], *loc[2:]]
    parts: list[str] = []
    model: type[UnitSection] | None = Config
    owner: type[UnitSection] | None = None  # the model that holds the last key
    for k, part in enumerate(loc):
        owner = model
        if not isinstance(part, str):
            parts.append(f"[{part}]")
            model = None
            continue
        if k == 1 and (loc[0], part) in renames:
            parts.append(renames[(loc[0], part)])
        else:
            parts.append(model.key(part, units) if model is not None else part)
        model = section_model if (k == 0 and section_model) else _submodel(model, part)
    key = ".".join(parts).replace(".[", "[") or "(top level)"
    msg = error["msg"].removeprefix("Value error, ")
    got = f", got {error.get('input')!r}"
    if kind == "extra_forbidden":
        allowed = ""
        if owner is not None:
            names = ", ".join(owner.key(f, units) for f in owner.model_fields)
            allowed = f"; allowed keys: {names}"
        msg = "unknown key" + allowed
    elif kind == "missing":
        msg = "required key missing"
    elif kind in ("union_tag_not_found", "union_tag_invalid"):
        section = str(loc[0]) if loc else ""
        if section == "structure":
            builder = error.get("input", {}).get("builder") if isinstance(
                error.get("input"), dict) else None
            msg = "needs either file: PATH or builder: fcc | sc | bcc | kob_andersen" + (
                f", got builder {builder!r}" if builder is not None else "")
        else:
            tag = error.get("ctx", {}).get("tag")
            key = f"{section}.type"
            msg = f"must be one of {' | '.join(SECTIONS.get(section, {}))}" + (
                f", got {tag!r}" if tag else " (required)")
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        msg = f"expected a mapping of keys{got}"
    elif kind == "literal_error":
        msg = f"must be {error['ctx']['expected']}{got}"
    elif kind != "value_error" and "input" in error:
        msg = f"{msg}{got}"
    if not loc and msg.startswith(tuple(f"{s}." for s in SECTIONS)):  # Config validators
        return msg.replace("\n", " ")
    return f"{key}: {msg}".replace("\n", " ")


def _submodel(model, field: str):
    if model is None or field not in model.model_fields:
        return None
    annotation = model.model_fields[field].annotation
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, UnitSection):
            return candidate
    return None


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"
