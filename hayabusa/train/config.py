"""Training configuration: a YAML file validated into typed objects (unknown keys are errors).

Schema (``?`` optional, ``=`` default; units in the key names: Å, eV)::

  seed: int = 0                       model initialisation, data split and batch order
  device: auto | cpu | cuda[:N] = auto
  data:
    files: [PATH or glob, ...]        ASE-readable labelled frames, relative to the config file
    index: str = ":"                  frames of each file (ASE index syntax)
    split: {train: 0.8, valid: 0.1, test: 0.1}    fractions of the frames, summing to 1
  model:
    type: deeppot_se = deeppot_se
    species?: [Cu, ...]               type order (default: the species of the data, sorted by Z)
    r_cut_A: 6.0, r_smth_A: 0.5
    embedding: [25, 50, 100], axis_neurons: 16, fitting: [240, 240, 240]
    neighbor_norm?: number            default: mean neighbours within r_cut (training frames)
    precision: float64 | float32 | mixed = float64
    e0_eV: least_squares | {Cu: -0.005, ...}      per-species reference energies
  training:
    steps, batch_atoms = 256, lr_start = 1e-3, lr_stop = 1e-6, schedule: exp | cosine = exp,
    energy_prefactor = [0.02, 1], force_prefactor = [1000, 1], stress_prefactor = [0, 0]
    ([start, limit]; the stress term is on the virial per atom), ema_decay = 0.99,
    clip_norm = 10, valid_every = 100, patience?, checkpoint_every = 1000

Any invalid file raises ``InputError`` with one line ``FILE: key.path: what is wrong``.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import (
    BaseModel,
    Field,
    PlainValidator,
    ValidationError,
    model_validator,
)

from ..config import StrictModel, check_device, read_yaml, require_mapping
from ..errors import InputError
from ..models import kinds
from ..models.registry import Positive, PositiveInt, atomic_number
from .trainer import TrainSettings

NonNegative = Annotated[float, Field(ge=0)]
Prefactor = tuple[NonNegative, NonNegative]


class Split(StrictModel):
    train: NonNegative = 0.8
    valid: NonNegative = 0.1
    test: NonNegative = 0.1

    @model_validator(mode="after")
    def _sums_to_one(self):
        total = self.train + self.valid + self.test
        if abs(total - 1.0) > 1e-9 or self.train == 0:
            raise ValueError(f"fractions must sum to 1 with train > 0, got {total:g}")
        return self


class Data(StrictModel):
    files: list[str] = Field(min_length=1)
    index: str = ":"
    split: Split = Split()


def _model_section():
    """The ``model:`` section: the settings schema of a registered model kind (by ``type``,
    default deeppot_se)."""
    settings = tuple(kind.settings for kind in kinds().values())
    if len(settings) == 1:
        return settings[0]
    return Annotated[Union[settings], Field(discriminator="type")]  # noqa: UP007


ModelSection = _model_section()


class Training(StrictModel):
    steps: PositiveInt
    batch_atoms: PositiveInt = 256
    lr_start: Positive = 1e-3
    lr_stop: Positive = 1e-6
    schedule: Literal["exp", "cosine"] = "exp"
    energy_prefactor: Prefactor = (0.02, 1.0)
    force_prefactor: Prefactor = (1000.0, 1.0)
    stress_prefactor: Prefactor = (0.0, 0.0)
    ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.99
    clip_norm: Positive = 10.0
    valid_every: PositiveInt = 100
    patience: PositiveInt | None = None
    checkpoint_every: PositiveInt = 1000


class TrainConfig(StrictModel):
    seed: Annotated[int, Field(strict=True)] = 0
    device: Annotated[str, PlainValidator(check_device)] = "auto"
    data: Data
    model: ModelSection
    training: Training

    @model_validator(mode="after")
    def _early_stopping_needs_validation(self):
        if self.training.patience is not None and self.data.split.valid == 0:
            raise ValueError("training.patience: early stopping needs validation frames "
                             "(data.split.valid > 0)")
        return self

    def settings(self) -> TrainSettings:
        t = self.training
        return TrainSettings(
            lr_start=t.lr_start, lr_stop=t.lr_stop, schedule=t.schedule, total_steps=t.steps,
            batch_atoms=t.batch_atoms, energy_prefactor=tuple(t.energy_prefactor),
            force_prefactor=tuple(t.force_prefactor),
            stress_prefactor=tuple(t.stress_prefactor), ema_decay=t.ema_decay,
            clip_norm=t.clip_norm, seed=self.seed, valid_every=t.valid_every,
            patience=t.patience)


def load_train_config(path) -> TrainConfig:
    """Read and validate a training config; InputError ``FILE: key.path: message``."""
    source = os.fspath(path)
    data = require_mapping(read_yaml(source), source)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        # a misspelt key also leaves its right spelling missing: report the misspelling
        first = min(exc.errors(), key=lambda e: e["type"] == "missing")
        raise InputError(f"{source}: {_describe(first)}") from None


def _describe(error: dict) -> str:
    loc = [str(p) for p in error["loc"] if not str(p).startswith(("literal[", "dict["))]
    key = ".".join(p if not p.isdigit() else f"[{p}]" for p in loc).replace(".[", "[")
    kind, msg = error["type"], error["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        owner = _owner(loc[:-1])
        allowed = f"; allowed keys: {', '.join(owner.model_fields)}" if owner else ""
        msg = f"unknown key{allowed}"
    elif kind == "missing":
        msg = "required key missing"
    elif "input" in error and kind not in ("value_error",):
        msg = f"{msg}, got {error['input']!r}"
    return f"{key}: {msg}" if key else msg


def _owner(loc: list[str]):
    model = TrainConfig
    for part in loc:
        field = model.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type) or \
                not issubclass(field.annotation, BaseModel):
            return None
        model = field.annotation
    return model


def data_files(cfg: TrainConfig, config_path) -> list[Path]:
    """The data files of ``cfg`` (globs expanded, relative to the config's folder, sorted)."""
    base = Path(config_path).parent
    out: list[Path] = []
    for k, pattern in enumerate(cfg.data.files):
        full = pattern if os.path.isabs(pattern) else str(base / pattern)
        matches = sorted(glob.glob(full)) if glob.has_magic(full) else \
            ([full] if os.path.isfile(full) else [])
        if not matches:
            raise InputError(f"{config_path}: data.files[{k}]: {pattern!r} matches no file "
                             f"(looked for {full})")
        out.extend(Path(m) for m in matches)
    return out


def species_numbers(cfg: TrainConfig) -> list[int] | None:
    """Atomic numbers of ``model.species`` (None when the data decide)."""
    if cfg.model.species is None:
        return None
    return [atomic_number(s) for s in cfg.model.species]
