"""Reporters called by the Simulation loop: LAMMPS-style thermo log, progress bar, checkpoints.

A reporter has ``interval`` (report when ``sim.step % interval == 0``) and
``start(sim)``, ``report(sim)``, ``finish(sim)``; ``finish`` runs after the run and also when
it stops with an error, so nothing already written is lost. Reporters that write per system
take ``system``: the index of the one system of the batch they write (None: all).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from ..errors import InputError


class Reporter:
    interval: int = 1
    system: int | None = None  # a per-system reporter's one system (None: every system)

    def systems(self, sim) -> list[int]:
        """The systems of the batch this reporter writes."""
        return list(range(sim.state.n_systems)) if self.system is None else [self.system]

    def start(self, sim) -> None:
        pass

    def report(self, sim) -> None:
        pass

    def finish(self, sim) -> None:
        pass


class ThermoLog(Reporter):
    """Thermo rows ``Step Temp PotEng KinEng TotEng Press`` (+ ``Econs`` for thermostats).

    One row per system, with a ``Sys`` column when the log holds several (``system`` None: the
    whole batch; an index: that system alone). Writes to ``stream`` (stdout by default) and,
    if given, to ``path``; its header names the run id. ``finish`` prints LAMMPS-style
    ``Loop time of …`` and ``Performance: …`` lines. Pressure is in GPa for metal units.
    """

    def __init__(self, interval: int = 100, path=None, stream=sys.stdout,
                 overwrite: bool = False, system: int | None = None):
        self.interval = max(1, int(interval))
        self.stream = stream
        self.path = Path(path) if path is not None else None
        if self.path is not None and self.path.exists() and not overwrite:
            raise InputError(f"{self.path} exists; pass --overwrite to replace it")
        self.system = system
        self._file = None

    def _atoms(self, sim) -> int:
        if self.system is None:
            return sim.state.n_atoms
        return int(sim.state.n_atoms_per_system[self.system])

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
                    f"energies {u.energy}, Press {press}; {len(self.systems(sim))} system(s), "
                    f"{self._atoms(sim)} atoms, integrator {sim.integrator.name}; "
                    f"run {sim.run_id}")
        cols = ["Step"] + (["Sys"] if len(self.systems(sim)) > 1 else []) + \
            ["Temp", "PotEng", "KinEng", "TotEng", "Press"] + \
            (["Econs"] if sim.integrator.name != "nve" else [])
        self._cols = cols
        self._write("".join(f"{c:>14}" for c in cols))

    def report(self, sim) -> None:
        t = sim.thermo()
        systems = self.systems(sim)
        for s in systems:
            row = [f"{sim.step:>14d}"]
            if len(systems) > 1:
                row.append(f"{s:>14d}")
            for key in ("temp", "pe", "ke", "etotal", "press"):
                row.append(f"{float(t[key][s]):>14.6g}")
            if "Econs" in self._cols:
                row.append(f"{float(t['conserved'][s]):>14.8g}")
            self._write("".join(row))

    def finish(self, sim) -> None:
        perf = sim.performance
        if perf is not None and perf["steps"] > 0:
            share = self._atoms(sim) / sim.state.n_atoms  # this log's atoms' share
            perf = {**perf, "katom_steps_per_s": perf["katom_steps_per_s"] * share}
            self._write(f"Loop time of {perf['loop_time_s']:.6g} on 1 procs for "
                        f"{perf['steps']} steps with {self._atoms(sim)} atoms")
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
            nl = sim.neighbors
            if nl is not None:
                self._write(f"Neighbor list builds = {nl.n_builds}")
                self._write(f"Dangerous builds = {nl.dangerous_builds}")
        if self._file is not None:
            self._file.close()
            self._file = None


def read_thermo_log(path) -> dict:
    """Thermo rows of a ``hayabusa.md.ThermoLog`` file (appended restarts included; a step
    logged twice keeps its last row). Returns ``columns`` {name: [rows] float array} (``Step``,
    optional ``Sys``, ``Temp``, ``PotEng``, …), ``n_atoms`` (from the ``# units`` header, or
    None) and ``ns_per_day`` (last ``Performance:`` line, or None)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the thermo log ({exc})") from None
    cols: list[str] | None = None
    rows: dict[tuple, list[float]] = {}
    n_atoms = ns_per_day = None
    for line in lines:
        tokens = line.split()
        if not tokens:
            continue
        if tokens[0] == "#":
            match = re.search(r"(\d+) atoms", line)
            n_atoms = int(match.group(1)) if match else n_atoms
        elif tokens[0] == "Step":
            cols = tokens
        elif tokens[:1] == ["Performance:"] and tokens[2:3] == ["ns/day,"]:
            ns_per_day = float(tokens[1])
        elif cols is not None and tokens[0].isdigit() and len(tokens) == len(cols):
            values = [float(x) for x in tokens]
            key = tuple(values[: 2 if "Sys" in cols else 1])
            rows[key] = values
    if cols is None or not rows:
        raise InputError(f"{path}: no thermo rows (expected a 'Step Temp PotEng …' header "
                         f"followed by rows)")
    table = np.array([rows[k] for k in sorted(rows)])
    return {"columns": {c: table[:, i] for i, c in enumerate(cols)}, "n_atoms": n_atoms,
            "ns_per_day": ns_per_day}


class ProgressBar(Reporter):
    """tqdm progress bar, shown only when stderr is a terminal (or ``force=True``). Without
    ``total`` it spans one run; with ``total`` steps it spans every run it reports for (a
    workflow's runs), until ``close()``."""

    def __init__(self, interval: int = 10, total: int | None = None, force: bool = False):
        self.interval = max(1, int(interval))
        self.total = total
        self.show = force or sys.stderr.isatty()
        self._bar = None
        self._last = 0
        if total is not None:
            self._open(total, 0)

    def _open(self, total: int, initial: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                         disable=not self.show)

    @property
    def done(self) -> int:
        """Steps counted so far."""
        return self._bar.n if self._bar is not None else 0

    def describe(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_description(text)

    def write(self, text: str) -> None:
        """Print a line above the bar (stdout)."""
        from tqdm import tqdm

        tqdm.write(text, file=sys.stdout)

    def start(self, sim) -> None:
        self._last = sim.step
        if self.total is None:
            self._open(sim.target_step, sim.step)

    def report(self, sim) -> None:
        if self._bar is not None:
            self._bar.update(sim.step - self._last)
            self._last = sim.step

    def finish(self, sim) -> None:
        self.report(sim)
        if self.total is None:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
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
