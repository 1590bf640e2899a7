"""Trajectory reporters: extended XYZ (small runs) and H5MD/HDF5 (large runs).

Both follow the reporter protocol of the Simulation loop: ``interval``,
``start(sim)``, ``report(sim)``, ``finish(sim)``. They read ``sim.step``, ``sim.time`` (unit
system's time unit), ``sim.state``, ``sim.result.energy`` [S], ``sim.result.forces`` [N, 3],
``sim.units``, ``sim.run_id`` and (H5MD only) ``sim.thermo()``. ``system``: write only that
system of the batch (stored as system 0), else every system. Each file records the run id;
appending to a file of another run is an InputError.

Files are never overwritten unless ``overwrite=True``; every frame is flushed to the OS, so
a run that stops (error, kill) leaves every frame written so far readable. On appending to an
existing file (``append=True``, or a second ``run()`` with the same reporter) a frame whose
step is ``<=`` the last step stored for its system is **dropped** (the stored frame is kept),
so a restart from an earlier checkpoint never duplicates frames.

Both formats store float64 values exactly (extxyz with shortest round-trip float text).
"""

from __future__ import annotations

import getpass
import logging
import os
from pathlib import Path

import ase.io.extxyz
import numpy as np
import torch

from ..errors import InputError, first_line
from .reporters import Reporter

log = logging.getLogger(__name__)

_FLOAT = np.float64


def _check_path(path, overwrite: bool, append: bool) -> Path:
    path = Path(path)
    if overwrite and append:
        raise InputError(f"{path}: pass either overwrite or append, not both")
    if path.is_dir():
        raise InputError(f"{path} is a directory; expected a trajectory file name")
    if path.exists() and not (overwrite or append):
        raise InputError(f"{path} exists; pass --overwrite to replace it")
    return path


def _check_interval(interval) -> int:
    if int(interval) != interval or int(interval) < 1:
        raise InputError(f"trajectory interval must be a positive integer, got {interval!r}")
    return int(interval)


def _numpy(t: torch.Tensor, dtype=_FLOAT) -> np.ndarray:
    return t.detach().to(device="cpu").numpy().astype(dtype, copy=False)


def _bounds(state) -> np.ndarray:
    """[S+1] atom offsets of each system in the flat batch."""
    counts = torch.bincount(state.system_idx, minlength=state.n_systems).cpu().numpy()
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _slices(state, systems: list[int]) -> list[slice]:
    """The atoms of each of ``systems``."""
    bounds = _bounds(state)
    return [slice(int(bounds[s]), int(bounds[s + 1])) for s in systems]


# =====================================================================================
# extended XYZ
# =====================================================================================


class _TrajectoryWriter(Reporter):
    """Common arguments: ``path``, ``interval`` (steps), ``overwrite``, ``append``,
    ``system``."""

    def __init__(self, path, interval: int = 100, overwrite: bool = False,
                 append: bool = False, system: int | None = None):
        self.path = _check_path(path, overwrite, append)
        self.interval = _check_interval(interval)
        self.overwrite = overwrite
        self.append = append
        self.system = system
        self._opened_before = False

    def _refuse_other_run(self, stored: str | None, sim) -> None:
        if stored is not None and stored != sim.run_id:
            raise InputError(f"{self.path}: cannot append, it holds run {stored} and this is "
                             f"run {sim.run_id}")


class ExtxyzWriter(_TrajectoryWriter):
    """Append frames to one extended-XYZ file that ``ase.io.read(path, index=':')`` reads.

    A frame of S systems is S consecutive XYZ blocks; block ``s`` holds system ``s`` with info
    keys ``system``, ``step``, ``time`` (sim time unit), ``energy`` (potential energy),
    ``run_id`` and ``pbc``; ``Lattice`` (row vectors); per-atom ``species``, ``pos``,
    ``masses``, ``momenta`` (ASE units, so ``atoms.get_velocities()`` is in ASE units) and
    ``forces``. Energy and forces
    come back as a SinglePointCalculator. Metal units: Å, eV, eV/Å, amu; lj: reduced.

    ``append=True`` continues an existing file (dropping frames whose step is ``<=`` the last
    stored step; an incomplete trailing block from a killed run is cut off first).
    """

    def __init__(self, path, interval: int = 100, overwrite: bool = False,
                 append: bool = False, system: int | None = None):
        super().__init__(path, interval, overwrite, append, system)
        self._file = None
        self._last_step: int | None = None  # last step fully stored

    # ------------------------------------------------------------------ protocol
    def start(self, sim) -> None:
        if self._file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._opened_before or (self.append and self.path.exists()):
            if not self._opened_before:
                self._refuse_other_run(_extxyz_run_id(self.path), sim)
                self._last_step = _repair_extxyz(self.path, len(self.systems(sim)))
            self._file = open(self.path, "a", encoding="utf-8")
        else:
            self._file = open(self.path, "w" if self.overwrite else "x", encoding="utf-8")
        self._opened_before = True

    def report(self, sim) -> None:
        if self._file is None:
            self.start(sim)
        step = int(sim.step)
        if self._last_step is not None and step <= self._last_step:
            log.info("%s: step %d already stored (last %d); frame dropped",
                     self.path, step, self._last_step)
            return
        atoms_list = sim.state.to_atoms(sim.units)
        energy = _numpy(sim.result.energy)
        forces = _numpy(sim.result.forces)
        parts = []
        systems = self.systems(sim)
        for k, (s, atoms_of) in enumerate(zip(systems, _slices(sim.state, systems),
                                              strict=True)):
            info = {"system": k, "step": step, "time": float(sim.time),
                    "energy": float(energy[s]), "run_id": sim.run_id}
            parts.append(_format_block(atoms_list[s], forces[atoms_of], info))
        self._file.write("".join(parts))  # one write per frame
        self._file.flush()
        self._last_step = step

    def finish(self, sim) -> None:
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None


def _format_block(atoms, forces: np.ndarray, info: dict) -> str:
    """One extxyz block with full float64 precision (``repr`` round-trips exactly)."""
    header = []
    cell = atoms.cell.array
    if cell.any():
        header.append('Lattice="' + " ".join(repr(float(x)) for x in cell.reshape(-1)) + '"')
    header.append("Properties=species:S:1:pos:R:3:masses:R:1:momenta:R:3:forces:R:3")
    for key, value in info.items():
        header.append(f"{key}={value!r}")
    header.append('pbc="' + " ".join("T" if p else "F" for p in atoms.pbc) + '"')
    columns = np.concatenate(
        [atoms.positions, atoms.get_masses()[:, None], atoms.get_momenta(), forces], axis=1
    ).astype(_FLOAT).tolist()
    lines = [f"{len(atoms)}\n", " ".join(header) + "\n"]
    for symbol, row in zip(atoms.get_chemical_symbols(), columns, strict=True):
        lines.append(symbol + " " + " ".join(map(repr, row)) + "\n")
    return "".join(lines)


def _extxyz_run_id(path: Path) -> str | None:
    """The run id in the first block of a hayabusa extxyz file (None: none recorded)."""
    with open(path, "rb") as f:
        f.readline()
        comment = f.readline().decode("utf-8", errors="replace")
    try:
        value = ase.io.extxyz.key_val_str_to_dict(comment).get("run_id")
    except ValueError:
        return None
    return None if value is None else str(value)


def _repair_extxyz(path: Path, n_systems: int) -> int | None:
    """Cut an incomplete trailing frame off ``path``; return the last complete step.

    A frame is complete when its last block is whole and it has ``n_systems`` blocks.
    """
    blocks = []  # (byte offset, step)
    good_end = 0
    with open(path, "rb") as f:
        while True:
            offset = f.tell()
            first = f.readline()
            if not first.strip():
                break
            comment = f.readline()
            try:
                n = int(first)
                step = int(ase.io.extxyz.key_val_str_to_dict(comment.decode())["step"])
            except (ValueError, KeyError):
                raise InputError(f"{path}: cannot append, block at byte {offset} is not a "
                                 "hayabusa extxyz frame (no step= key)") from None
            lines = [f.readline() for _ in range(n)]
            if not comment.endswith(b"\n") or not all(ln.endswith(b"\n") for ln in lines):
                break
            blocks.append((offset, step))
            good_end = f.tell()
    # drop blocks of a last step that has fewer than n_systems blocks
    if blocks:
        last = blocks[-1][1]
        tail = [b for b in blocks if b[1] == last]
        if len(tail) < n_systems:
            good_end = tail[0][0]
            blocks = blocks[: len(blocks) - len(tail)]
    if good_end < path.stat().st_size:
        log.warning("%s: cutting off an incomplete trailing frame (bytes %d..%d)",
                    path, good_end, path.stat().st_size)
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return blocks[-1][1] if blocks else None


# =====================================================================================
# H5MD
# =====================================================================================

# H5MD unit strings (units module syntax) per element, for metal units; lj stores none.
_METAL_UNITS = {
    "position": "angstrom", "velocity": "angstrom fs-1", "force": "eV angstrom-1",
    "edges": "angstrom", "mass": "amu", "energy": "eV", "time": "fs", "temperature": "K",
}
_OBSERVABLES = ("potential_energy", "kinetic_energy", "total_energy", "conserved_energy",
                "temperature")
_VECTORS = ("position", "velocity", "force")


class H5MDWriter(_TrajectoryWriter):
    """Write an H5MD 1.1 file (HDF5), one particle group per system of the batch.

    Layout (T frames, system ``s`` with ``n_s`` atoms; float64 unless noted)::

        /h5md                          attrs version=[1, 1]; author/ (name),
                                       creator/ (name="hayabusa", version)
        /parameters                    attrs unit_system ("metal" | "lj"), n_systems, run_id
        /particles/system_{s}/
            position/ velocity/ force/ step [T] int64, time [T], value [T, n_s, 3]
            box/                       attrs dimension=3, boundary[3] "periodic" | "none"
                edges/                 step, time, value [T, 3, 3] (row vectors)
            species [n_s] int64 (atomic numbers), mass [n_s]
        /observables/system_{s}/
            potential_energy/ kinetic_energy/ total_energy/ conserved_energy/ temperature/
                                       step, time, value [T] (conserved: the integrator's)

    Within a system every element shares one ``step`` and ``time`` dataset (HDF5 hard links,
    allowed by H5MD). Every growing dataset carries Fletcher-32 checksums of its chunks, so
    damaged bytes are a read error, not other numbers. Metal units: ``unit`` attrs angstrom,
    angstrom fs-1, eV angstrom-1, eV, amu, fs, K (velocities stored in Å/fs); lj runs store
    reduced numbers without unit attrs.
    Values are written before ``step``, so ``len(step)`` counts complete frames.

    ``append=True`` reopens an existing file (same systems, atom counts and species) and
    extends it; frames whose step is ``<=`` the last stored step are dropped.
    """

    def __init__(self, path, interval: int = 100, overwrite: bool = False,
                 append: bool = False, system: int | None = None):
        super().__init__(path, interval, overwrite, append, system)
        self._h5 = None
        self._last_step: list[int | None] = []

    # ------------------------------------------------------------------ protocol
    def start(self, sim) -> None:
        if self._h5 is not None:
            return
        import h5py

        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._opened_before or (self.append and self.path.exists()):
            try:
                self._h5 = h5py.File(self.path, "r+")
                self._check_layout(sim)
            except InputError:
                raise
            except Exception as exc:  # h5py: OSError, KeyError, RuntimeError… for a damaged file
                if self._h5 is not None:
                    self._h5.close()
                    self._h5 = None
                raise InputError(f"{self.path}: cannot append, the file is truncated or damaged "
                                 f"({first_line(exc)})") from None
        else:
            self._h5 = h5py.File(self.path, "w" if self.overwrite else "w-")
            self._create_layout(sim)
            self._h5.flush()
        self._opened_before = True

    def report(self, sim) -> None:
        if self._h5 is None:
            self.start(sim)
        step = int(sim.step)
        time = float(sim.time)
        state = sim.state
        per_atom = {
            "position": _numpy(state.positions),
            "velocity": _numpy(state.velocities),
            "force": _numpy(sim.result.forces),
        }
        cell = _numpy(state.cell)
        thermo = {k: _numpy(v) for k, v in sim.thermo().items()}
        observables = {"potential_energy": thermo["pe"], "kinetic_energy": thermo["ke"],
                       "total_energy": thermo["etotal"],
                       "conserved_energy": thermo["conserved"], "temperature": thermo["temp"]}
        try:
            systems = self.systems(sim)
            for k, (s, sl) in enumerate(zip(systems, _slices(state, systems), strict=True)):
                last = self._last_step[k]
                if last is not None and step <= last:
                    log.info("%s: system %d step %d already stored (last %d); frame dropped",
                             self.path, k, step, last)
                    continue
                part = self._h5[f"particles/system_{k}"]
                obs = self._h5[f"observables/system_{k}"]
                t = part["position/step"].shape[0]
                for name in _VECTORS:
                    _put(part[f"{name}/value"], t, per_atom[name][sl])
                _put(part["box/edges/value"], t, cell[s])
                for name in _OBSERVABLES:
                    _put(obs[f"{name}/value"], t, observables[name][s])
                _put(part["position/time"], t, time)
                _put(part["position/step"], t, step)  # last: marks the frame complete
                self._last_step[k] = step
            self._h5.flush()
        except Exception as exc:  # h5py fails on writing into a damaged file
            self._h5.close()
            self._h5 = None
            raise InputError(f"{self.path}: cannot append the frame of step {step} "
                             f"({first_line(exc)})") from None

    def finish(self, sim) -> None:
        if self._h5 is not None:
            try:
                self._h5.flush()
            finally:
                self._h5.close()
                self._h5 = None

    # -------------------------------------------------------------------- layout
    def _create_layout(self, sim) -> None:
        import h5py

        f = self._h5
        units = sim.units.name
        unit = _METAL_UNITS if units == "metal" else {}
        meta = f.create_group("h5md")
        meta.attrs["version"] = np.array([1, 1], dtype=np.int32)
        meta.create_group("author").attrs["name"] = _author()
        creator = meta.create_group("creator")
        creator.attrs["name"] = "hayabusa"
        creator.attrs["version"] = _version()
        if unit:
            meta.create_group("modules/units").attrs["version"] = np.array([1, 0], np.int32)
        systems = self.systems(sim)
        params = f.create_group("parameters")
        params.attrs["unit_system"] = units
        params.attrs["n_systems"] = len(systems)
        params.attrs["run_id"] = sim.run_id

        state = sim.state
        numbers = _numpy(state.atomic_numbers, np.int64)
        masses = _numpy(state.masses)
        pbc = state.pbc.cpu().numpy()
        for k, (s, sl) in enumerate(zip(systems, _slices(sim.state, systems), strict=True)):
            n = sl.stop - sl.start
            part = f.create_group(f"particles/system_{k}")
            step = part.create_dataset("position/step", shape=(0,), maxshape=(None,),
                                       dtype=np.int64, chunks=(1024,), fletcher32=True)
            time = part.create_dataset("position/time", shape=(0,), maxshape=(None,),
                                       dtype=_FLOAT, chunks=(1024,), fletcher32=True)
            if "time" in unit:
                time.attrs["unit"] = unit["time"]
            for name in _VECTORS:
                _element(part, name, (n, 3), step, time, unit.get(name))
            box = part.create_group("box")
            box.attrs["dimension"] = 3
            box.attrs["boundary"] = np.array(
                ["periodic" if p else "none" for p in pbc[s]], dtype=h5py.string_dtype()
            )
            _element(box, "edges", (3, 3), step, time, unit.get("edges"))
            part.create_dataset("species", data=numbers[sl])
            mass = part.create_dataset("mass", data=masses[sl])
            if "mass" in unit:
                mass.attrs["unit"] = unit["mass"]
            obs = f.create_group(f"observables/system_{k}")
            for name in _OBSERVABLES:
                which = "temperature" if name == "temperature" else "energy"
                _element(obs, name, (), step, time, unit.get(which))
        self._last_step = [None] * len(systems)

    def _check_layout(self, sim) -> None:
        """Validate an existing file against the batch; trim half-written frames."""
        f = self._h5
        numbers = _numpy(sim.state.atomic_numbers, np.int64)
        systems = _slices(sim.state, self.systems(sim))

        def bad(what: str):
            self._h5.close()
            self._h5 = None
            return InputError(f"{self.path}: cannot append, {what}")

        if "particles" not in f or "h5md" not in f:
            raise bad("it is not an H5MD file written by hayabusa")
        stored_units = f["parameters"].attrs.get("unit_system", "")
        if stored_units != sim.units.name:
            raise bad(f"it holds {stored_units!r} units, this run uses {sim.units.name!r}")
        stored_run = f["parameters"].attrs.get("run_id")
        if stored_run is not None and str(stored_run) != sim.run_id:
            raise bad(f"it holds run {stored_run} and this is run {sim.run_id}")
        n_stored = len([k for k in f["particles"] if k.startswith("system_")])
        if n_stored != len(systems):
            raise bad(f"it holds {n_stored} systems, this run writes {len(systems)}")
        self._last_step = []
        for k, sl in enumerate(systems):
            part = f[f"particles/system_{k}"]
            if not np.array_equal(part["species"][()], numbers[sl]):
                raise bad(f"system {k} has different atoms (count or species) in the file")
            t = part["position/step"].shape[0]
            obs = f[f"observables/system_{k}"]
            values = [part[f"{n}/value"] for n in _VECTORS] + [part["box/edges/value"]]
            values += [obs[f"{n}/value"] for n in _OBSERVABLES if n in obs]
            values += [part["position/time"]]
            for ds in values:  # a killed run may have left values past the last step
                if ds.shape[0] != t:
                    ds.resize(t, axis=0)
            self._last_step.append(int(part["position/step"][t - 1]) if t else None)


def _element(group, name: str, shape: tuple, step, time, unit: str | None):
    """Create a time-dependent element ``name`` with value [T, *shape] sharing step/time."""
    g = group.require_group(name)
    if "step" not in g:
        g["step"] = step  # hard link
        g["time"] = time
    frame_bytes = 8 * int(np.prod(shape, dtype=np.int64))
    if frame_bytes <= 1 << 16:  # small frames: ~64 KiB chunks of several frames
        chunks = (max(1, (1 << 16) // max(frame_bytes, 1)), *shape)
    else:  # large frames: one frame per chunk, at most 4 MiB
        chunks = (1, max(1, min(shape[0], (1 << 22) // (frame_bytes // shape[0]))),
                  *shape[1:])
    value = g.create_dataset("value", shape=(0, *shape), maxshape=(None, *shape),
                             dtype=_FLOAT, chunks=chunks, fletcher32=True)
    if unit:
        value.attrs["unit"] = unit
    return g


def _put(dataset, t: int, value) -> None:
    """Write ``value`` as frame ``t`` of ``dataset``, growing it to ``t + 1`` frames."""
    if dataset.shape[0] < t + 1:
        dataset.resize(t + 1, axis=0)
    dataset[t] = value


def _author() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers)
        return os.environ.get("USER", "unknown")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("hayabusa")
    except Exception:
        return "unknown"


# =====================================================================================
# reading
# =====================================================================================


def read_h5md(path) -> dict[int, dict]:
    """Read an H5MD file written by ``H5MDWriter`` into numpy arrays.

    Returns ``{s: data}`` per system ``s``; ``data`` has ``step`` [T] int64, ``time`` [T]
    (sim time unit), ``positions``, ``velocities`` (Å/fs for metal), ``forces`` [T, n, 3],
    ``cell`` [T, 3, 3] (row vectors), ``pbc`` [3] bool, ``atomic_numbers`` [n] int64,
    ``masses`` [n], ``potential_energy``, ``kinetic_energy``, ``total_energy``,
    ``conserved_energy``, ``temperature`` [T] (the last two in files written since they were
    recorded), ``units`` ("metal" | "lj") and ``run_id`` ("" in older files). Only complete
    frames (``len(step)``) are returned.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            if "particles" not in f:
                raise InputError(f"{path} is not an H5MD file (no /particles group)")
            return _read_systems(f)
    except InputError:
        raise
    except Exception as exc:  # h5py: OSError, KeyError, RuntimeError… for a damaged file
        raise InputError(f"{path}: cannot read, the H5MD file is truncated or damaged "
                         f"({first_line(exc)})") from None


def _read_systems(f) -> dict[int, dict]:
    """``read_h5md``'s dictionary from the open file ``f``."""
    out: dict[int, dict] = {}
    units = f["parameters"].attrs.get("unit_system", "") if "parameters" in f else ""
    names = sorted((k for k in f["particles"] if k.startswith("system_")),
                   key=lambda k: int(k.split("_")[1]))
    for name in names:
        s = int(name.split("_")[1])
        part = f[f"particles/{name}"]
        obs = f[f"observables/{name}"]
        t = part["position/step"].shape[0]
        boundary = [b.decode() if isinstance(b, bytes) else str(b)
                    for b in part["box"].attrs["boundary"]]
        data = {
            "step": part["position/step"][:t].astype(np.int64),
            "time": part["position/time"][:t],
            "positions": part["position/value"][:t],
            "velocities": part["velocity/value"][:t],
            "forces": part["force/value"][:t],
            "cell": part["box/edges/value"][:t],
            "pbc": np.array([b == "periodic" for b in boundary]),
            "atomic_numbers": part["species"][()].astype(np.int64),
            "masses": part["mass"][()],
            "units": units,
        }
        for key in _OBSERVABLES:
            if key in obs:  # files before conserved_energy and temperature lack them
                data[key] = obs[f"{key}/value"][:t]
        data["run_id"] = str(f["parameters"].attrs.get("run_id", "")) if "parameters" in f \
            else ""
        out[s] = data
    return out
