"""The model registry: every trainable model kind registers its name, its settings schema (the
``model:`` section of a training config), its builder and its core class (what model files
store). Training, ``load_model``, the ASE calculator, export and ``bench`` go through it, so a
new kind plugs in by registering itself here.

A core is an ``nn.Module`` with ``kind`` (its registered name), ``config`` (the keyword
arguments that rebuild it), ``species``, ``cutoff``, ``typed_request`` and the model-state API
``set_reference_energies(e0)`` and ``fit_input_statistics(batches, …)``; its ``forward`` maps
tensors to per-atom energies (see ``models.deeppot``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import ase.data
from pydantic import Field, field_validator

from ..config import StrictModel
from ..errors import InputError

PositiveInt = Annotated[int, Field(strict=True, gt=0)]
Positive = Annotated[float, Field(gt=0)]


class ModelSettings(StrictModel):
    """Keys every kind's ``model:`` section has: ``type`` (the kind), ``species`` (type order;
    default: the data's, sorted by Z), ``e0_eV`` (per-species reference energies, fitted by
    least squares or given) and ``precision``."""

    type: str
    species: list[str] | None = None
    e0_eV: Literal["least_squares"] | dict[str, float] = "least_squares"
    precision: Literal["float64", "float32", "mixed"] = "float64"

    @field_validator("species")
    @classmethod
    def _symbols(cls, value):
        if value is not None:
            for s in value:
                atomic_number(s)
            if not value or len(set(value)) != len(value):
                raise ValueError("expected distinct chemical symbols")
        return value

    @field_validator("e0_eV")
    @classmethod
    def _e0_symbols(cls, value):
        if isinstance(value, dict):
            for s in value:
                atomic_number(s)
        return value


def atomic_number(symbol) -> int:
    if isinstance(symbol, str) and symbol in ase.data.atomic_numbers:
        return ase.data.atomic_numbers[symbol]
    raise ValueError(f"unknown chemical symbol {symbol!r}")


@dataclass(frozen=True)
class ModelKind:
    """``name``; ``core`` the class files store (rebuilt as ``core(**config)``); ``settings``
    its ``ModelSettings`` subclass; ``build(settings, species)`` → an untrained core."""

    name: str
    core: type
    settings: type[ModelSettings]
    build: Callable


KINDS: dict[str, ModelKind] = {}


def register(kind: ModelKind) -> ModelKind:
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> ModelKind:
    """The registered kind ``name``; an unknown name is an InputError listing the known."""
    _load_builtin()
    try:
        return KINDS[name]
    except KeyError:
        raise InputError(f"unknown model kind {name!r}; known: {', '.join(sorted(KINDS))}") \
            from None


def kinds() -> dict[str, ModelKind]:
    """Every registered kind (the built-in ones loaded)."""
    _load_builtin()
    return KINDS


def _load_builtin() -> None:
    from . import deeppot  # noqa: F401  (registers "deeppot_se")
