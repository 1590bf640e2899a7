"""Reporters called by the Simulation loop: LAMMPS-style thermo log, progress bar, checkpoints.

A reporter has ``interval`` (report when ``sim.step % interval == 0``) and
``start(sim)``, ``report(sim)``, ``finish(sim)``; ``finish`` runs after the run and also when
it stops with an error, so nothing already written is lost.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError


class Reporter:
    interval: int = 1

    def start(self, sim) -> None:
        pass

    def report(self, sim) -> None:
        pass

    def finish(self, sim) -> None:
        pass


class ThermoLog(Reporter):
    """Thermo rows ``Step Temp PotEng KinEng TotEng Press`` (+ ``Econs`` for thermostats).

    One row per system, with a ``Sys`` column when the batch holds several. Writes to
    ``stream`` (stdout by default) and, if given, to ``path``. ``finish`` prints LAMMPS-style
    ``Loop time of …`` and ``Performance: …`` lines. Pressure is in GPa for metal units.
    """


    def __init__(self, interval: int = 100, path=None, stream=sys.stdout,
                 overwrite: bool = False):
        self.interval = max(1, int(interval))
        self.stream = stream
        self.path = Path(path) if path is not None else None
        if self.path is not None and self.path.exists() and not overwrite:
            raise InputError(f"{self.path} exists; pass --overwrite to replace it")
        self._file = None

    def _write(self, text: str) -> None:
        for out in (self.stream, self._file):
            if out is not None:
                out.write(text + "\n")
                out.flush()

    def start(self, sim) -> None:
        if self.path is not None and self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a")
        u = sim.units
        press = "GPa" if u.pressure_to_GPa else f"{u.energy}/{u.length}^3"
        self._write(f"# units {u.name}: time {u.time}, Temp {u.temperature}, "
                    f"energies {u.energy}, Press {press}; {sim.state.n_systems} system(s), "
                    f"{sim.state.n_atoms} atoms, integrator {sim.integrator.name}")
        cols = ["Step"] + (["Sys"] if sim.state.n_systems > 1 else []) + \
            ["Temp", "PotEng", "KinEng", "TotEng", "Press"] + \
            (["Econs"] if sim.integrator.name != "nve" else [])
        self._cols = cols
        self._write("".join(f"{c:>14}" for c in cols))

    def report(self, sim) -> None:
        t = sim.thermo()
        n = sim.state.n_systems
        for s in range(n):
            row = [f"{sim.step:>14d}"]
            if n > 1:
                row.append(f"{s:>14d}")
            for key in ("temp", "pe", "ke", "etotal", "press"):
                row.append(f"{float(t[key][s]):>14.6g}")
            if "Econs" in self._cols:
                row.append(f"{float(t['conserved'][s]):>14.8g}")
            self._write("".join(row))

    def finish(self, sim) -> None:
        perf = sim.performance
        if perf is not None and perf["steps"] > 0:
            self._write(f"Loop time of {perf['loop_time_s']:.6g} on 1 procs for "
                        f"{perf['steps']} steps with {sim.state.n_atoms} atoms")
            self._write("")
            if sim.units.name == "metal":
                self._write(f"Performance: {perf['ns_per_day']:.3f} ns/day, "
                            f"{perf['hours_per_ns']:.3f} hours/ns, "
                            f"{perf['timesteps_per_s']:.3f} timesteps/s, "
                            f"{perf['katom_steps_per_s']:.3f} katom-step/s")
            else:
                self._write(f"Performance: {perf['time_per_day']:.3f} tau/day, "
                            f"{perf['timesteps_per_s']:.3f} timesteps/s, "
                            f"{perf['katom_steps_per_s']:.3f} katom-step/s")
            nl = sim.forces.neighbors
            if nl is not None:
                self._write(f"Neighbor list builds = {nl.n_builds}")
                self._write(f"Dangerous builds = {sim.forces.dangerous_builds}")
        if self._file is not None:
            self._file.close()
            self._file = None


class ProgressBar(Reporter):
    """tqdm progress bar, shown only when stderr is a terminal (or ``force=True``)."""

    def __init__(self, interval: int = 10, force: bool = False):
        self.interval = max(1, int(interval))
        self.force = force
        self._bar = None

    def start(self, sim) -> None:
        if self.force or sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=sim.target_step, initial=sim.step, unit="step",
                             dynamic_ncols=True)

    def report(self, sim) -> None:
        if self._bar is not None:
            self._bar.update(sim.step - self._bar.n)

    def finish(self, sim) -> None:
        if self._bar is not None:
            self._bar.update(sim.step - self._bar.n)
            self._bar.close()
            self._bar = None


class CheckpointWriter(Reporter):
    """Writes ``sim.save_checkpoint(path)`` every ``interval`` steps and at the end of the run.

    Each write is atomic (temporary file + rename), so the last good checkpoint survives a
    crash. The end-of-run write is skipped when the run stopped with an error.
    """

    def __init__(self, path, interval: int = 1000):
        self.path = Path(path)
        self.interval = max(1, int(interval))

    def report(self, sim) -> None:
        if sim.step > 0:
            sim.save_checkpoint(self.path)

    def finish(self, sim) -> None:
        if sim.error is None:
            sim.save_checkpoint(self.path)
