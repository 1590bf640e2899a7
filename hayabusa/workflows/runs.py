"""Run utilities shared by the workflows (``hayabusa md``, ``hayabusa study`` and those to
come): the integrator a config names and FIRE relaxation with its one-line summary. Output
guards and run-directory names are ``hayabusa.rundir``, the device of a config or a
``--device`` option ``config.device_option``, the progress bar ``md.ProgressBar``."""

from __future__ import annotations

from ..errors import InputError
from ..md import CSVR, FIRE, Langevin, NoseHooverChain, VelocityVerlet


def make_integrator(kind: str, timestep, units: str, temperature=None, tau=None,
                    friction=None, chain_length: int = 3, seed: int = 0):
    """The integrator ``kind`` (nve, langevin, nose_hoover, csvr) with per-system
    ``temperature`` targets (a number or one per system) and its coupling."""
    if kind == "nve":
        return VelocityVerlet(timestep, units)
    if kind == "langevin":
        return Langevin(timestep, temperature, friction, units, seed=seed)
    if kind == "nose_hoover":
        return NoseHooverChain(timestep, temperature, tau, units, chain_length=chain_length)
    if kind == "csvr":
        return CSVR(timestep, temperature, tau, units, seed=seed)
    raise InputError(f"unknown integrator {kind!r}; expected nve, langevin, nose_hoover or csvr")


def relax(state, potential, units: str, fmax: float, max_steps: int, skin: float,
          neighbor_backend: str = "auto") -> tuple[bool, int, float, str]:
    """FIRE at fixed cell, in place: (converged, steps, largest force, a summary line)."""
    fire = FIRE(state, potential, units, fmax=fmax, skin=skin,
                neighbor_backend=neighbor_backend)
    converged = fire.run(max_steps)
    unit = "eV/Å" if units == "metal" else "ε/σ"
    largest = float(fire.max_force.max())
    what = (f"converged in {fire.n_steps} steps" if converged else
            f"stopped at max_steps = {fire.n_steps}")
    line = (f"FIRE: {what}, max force {largest:.4g} {unit} (fmax {fmax:g} {unit}), energy "
            f"{float(fire.result.energy.sum()):.8g}")
    return converged, fire.n_steps, largest, line
