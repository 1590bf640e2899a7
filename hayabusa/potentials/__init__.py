"""Potentials: the protocol, pair potentials, sums, and ASE calculators as potentials."""

from .ase_calculator import AseCalculatorPotential
from .base import Potential, PotentialResult
from .combine import SumPotential
from .pair import LennardJones, Morse, PairPotential, kob_andersen

__all__ = ["AseCalculatorPotential", "LennardJones", "Morse", "PairPotential", "Potential",
           "PotentialResult", "SumPotential", "kob_andersen"]
