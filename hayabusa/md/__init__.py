"""Molecular dynamics: integrators and thermostats, minimizer, the Simulation loop, snapshots
and reporters."""

from .fire import FIRE
from .integrators import CSVR, Integrator, Langevin, NoseHooverChain, VelocityVerlet
from .reporters import CheckpointWriter, ProgressBar, Reporter, ThermoLog
from .simulation import Simulation
from .snapshot import Snapshot
from .thermostats import (
    CSVRThermostat,
    LangevinThermostat,
    NoseHooverChainThermostat,
    TemperatureSchedule,
    Thermostat,
)
from .velocities import kinetic_energy, maxwell_boltzmann, remove_com_velocity

__all__ = ["CSVR", "CSVRThermostat", "FIRE", "CheckpointWriter", "Integrator", "Langevin",
           "LangevinThermostat", "NoseHooverChain", "NoseHooverChainThermostat", "ProgressBar",
           "Reporter", "Simulation", "Snapshot", "TemperatureSchedule", "Thermostat",
           "ThermoLog", "VelocityVerlet", "kinetic_energy", "maxwell_boltzmann",
           "remove_com_velocity"]
