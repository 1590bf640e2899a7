"""Unit systems.

``metal``: Å, eV, amu, fs, K (velocities Å/fs, stress eV/Å³), constants from ASE.
``lj``: reduced units, σ = ε = m = k_B = 1, time in τ = σ·sqrt(m/ε).

Each system gives what the integrators need:
  kB       Boltzmann constant, energy / temperature
  ftm2v    force / mass → acceleration in length / time²  (a = ftm2v · F / m)
  mvv2e    mass · velocity² → energy  (= 1 / ftm2v)
"""

from __future__ import annotations

from dataclasses import dataclass

import ase.units

from .errors import InputError


@dataclass(frozen=True)
class UnitSystem:
    name: str
    length: str
    energy: str
    mass: str
    time: str
    temperature: str
    kB: float
    ftm2v: float
    pressure_to_GPa: float | None  # energy/length³ → GPa; None for reduced units

    @property
    def mvv2e(self) -> float:
        return 1.0 / self.ftm2v


# ASE's time unit is Å·sqrt(amu/eV) ≈ 10.18 fs; ase.units.fs converts fs into it, so an
# acceleration eV/(Å·amu) is ase.units.fs² Å/fs².
METAL = UnitSystem(
    name="metal", length="Å", energy="eV", mass="amu", time="fs", temperature="K",
    kB=ase.units.kB, ftm2v=ase.units.fs**2, pressure_to_GPa=1.0 / ase.units.GPa,
)
LJ = UnitSystem(
    name="lj", length="σ", energy="ε", mass="m", time="τ", temperature="ε/k_B",
    kB=1.0, ftm2v=1.0, pressure_to_GPa=None,
)

UNIT_SYSTEMS = {"metal": METAL, "lj": LJ}


def get_units(name: str | UnitSystem) -> UnitSystem:
    """Look up a unit system by name ('metal' or 'lj')."""
    if isinstance(name, UnitSystem):
        return name
    try:
        return UNIT_SYSTEMS[name]
    except KeyError:
        raise InputError(f"unknown unit system {name!r}; expected one of "
                         f"{sorted(UNIT_SYSTEMS)}") from None
