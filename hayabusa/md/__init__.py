"""Molecular dynamics: integrators, minimizer, the Simulation loop and its reporters."""

from .fire import FIRE
from .integrators import CSVR, Integrator, Langevin, NoseHooverChain, VelocityVerlet
from .reporters import CheckpointWriter, ProgressBar, Reporter, ThermoLog
from .simulation import Simulation
from .velocities import kinetic_energy, maxwell_boltzmann, remove_com_velocity

__all__ = ["CSVR", "FIRE", "CheckpointWriter", "Integrator", "Langevin", "NoseHooverChain",
           "ProgressBar", "Reporter", "Simulation", "ThermoLog", "VelocityVerlet",
           "kinetic_energy", "maxwell_boltzmann", "remove_com_velocity"]
