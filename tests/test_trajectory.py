"""Trajectory reporters: extxyz and H5MD round trips, appending, overwrite refusal, crashes."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import ase.io
import ase.units
import h5py
import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from hayabusa.errors import InputError
from hayabusa.md.trajectory import ExtxyzWriter, H5MDWriter, read_h5md
from hayabusa.state import State
from hayabusa.units import get_units

DT = 0.5  # timestep of the fake simulation, fs (metal) or tau (lj)


def _kinetic_energy(state: State, units) -> torch.Tensor:
    """[S] float64 kinetic energy in the unit system's energy unit."""
    per_atom = 0.5 * units.mvv2e * state.masses * (state.velocities**2).sum(dim=1)
    return torch.zeros(state.n_systems, dtype=torch.float64).index_add_(
        0, state.system_idx, per_atom.double())


def make_sim(units: str = "metal") -> SimpleNamespace:
    """A fake Simulation holding a 2-system batch: Cu fcc (4 atoms, pbc) + H2O (pbc T T F)."""
    water = molecule("H2O")
    water.cell = [[8.0, 0.0, 0.0], [0.5, 9.0, 0.0], [0.0, 0.0, 10.0]]
    water.pbc = [True, True, False]
    state = State.from_atoms([bulk("Cu", "fcc", a=3.6, cubic=True), water], units=units)
    sim = SimpleNamespace(step=0, time=0.0, state=state, units=get_units(units), result=None,
                          run_id="test-run")
    sim.kinetic_energy = lambda: _kinetic_energy(sim.state, sim.units)

    def thermo():
        ke, pe = sim.kinetic_energy(), sim.result.energy
        return {"pe": pe, "ke": ke, "etotal": pe + ke, "conserved": pe + ke + 1.0,
                "temp": ke * 100.0}

    sim.thermo = thermo
    return sim


def advance(sim: SimpleNamespace, step: int, seed: int) -> None:
    """Jump the fake simulation to ``step`` with fresh random (full-mantissa) data."""
    g = torch.Generator().manual_seed(seed)
    st = sim.state
    n, s = st.n_atoms, st.n_systems
    sim.step, sim.time = step, step * DT
    st.positions = st.positions + 0.1 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    st.velocities = 0.05 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    st.cell = st.cell * (1 + 0.01 * torch.rand(s, 1, 1, generator=g, dtype=torch.float64))
    sim.result = SimpleNamespace(
        energy=-3.0 * torch.rand(s, generator=g, dtype=torch.float64),
        forces=torch.randn(n, 3, generator=g, dtype=torch.float64),
    )


def snapshot(sim: SimpleNamespace) -> dict:
    """Reference copy of what a frame must store (numpy, float64, per-system slices)."""
    st = sim.state
    counts = torch.bincount(st.system_idx).tolist()
    b = np.concatenate([[0], np.cumsum(counts)])
    pe = sim.result.energy.numpy().copy()
    ke = sim.kinetic_energy().numpy()
    return {
        "step": sim.step, "time": sim.time, "pe": pe, "ke": ke,
        "pos": [st.positions[b[i]:b[i + 1]].numpy().copy() for i in range(st.n_systems)],
        "vel": [st.velocities[b[i]:b[i + 1]].numpy().copy() for i in range(st.n_systems)],
        "frc": [sim.result.forces[b[i]:b[i + 1]].numpy().copy() for i in range(st.n_systems)],
        "cell": st.cell.numpy().copy(), "pbc": st.pbc.numpy().copy(),
        "z": [st.atomic_numbers[b[i]:b[i + 1]].numpy() for i in range(st.n_systems)],
        "mass": [st.masses[b[i]:b[i + 1]].numpy() for i in range(st.n_systems)],
    }


def run_frames(writer, sim, steps, seed0=0, finish=True) -> list[dict]:
    """start, report at ``steps`` (fresh data each), finish; return reference frames."""
    writer.start(sim)
    refs = []
    for k, step in enumerate(steps):
        advance(sim, step, seed0 + k)
        writer.report(sim)
        refs.append(snapshot(sim))
    if finish:
        writer.finish(sim)
    return refs


# ---------------------------------------------------------------------------- extxyz
def check_extxyz(path, refs) -> None:
    frames = ase.io.read(path, index=":")
    n_sys = len(refs[0]["pos"])
    assert len(frames) == len(refs) * n_sys
    for k, ref in enumerate(refs):
        for s in range(n_sys):
            atoms = frames[k * n_sys + s]
            assert atoms.info["system"] == s
            assert atoms.info["step"] == ref["step"]
            assert atoms.info["time"] == ref["time"]
            np.testing.assert_array_equal(atoms.numbers, ref["z"][s])
            np.testing.assert_array_equal(atoms.get_masses(), ref["mass"][s])
            np.testing.assert_array_equal(atoms.positions, ref["pos"][s])
            np.testing.assert_array_equal(atoms.cell.array, ref["cell"][s])
            np.testing.assert_array_equal(atoms.pbc, ref["pbc"][s])
            assert atoms.get_potential_energy() == ref["pe"][s]
            np.testing.assert_array_equal(atoms.get_forces(), ref["frc"][s])
            # velocities are stored in ASE units (momenta); Å/fs = ASE velocity * ase.units.fs
            v_ase = atoms.get_velocities()
            np.testing.assert_allclose(v_ase * ase.units.fs, ref["vel"][s], rtol=1e-14,
                                       atol=1e-16)


def test_extxyz_round_trip_is_exact(tmp_path):
    sim = make_sim()
    path = tmp_path / "traj.extxyz"
    refs = run_frames(ExtxyzWriter(path, interval=10), sim, [0, 10, 20])
    check_extxyz(path, refs)


def test_extxyz_append_continues_without_duplicates(tmp_path):
    path = tmp_path / "traj.xyz"
    sim = make_sim()
    first = run_frames(ExtxyzWriter(path, interval=10), sim, [0, 10, 20])
    # restart from a checkpoint at step 10: steps 10 and 20 are dropped, 30 and 40 appended
    writer = ExtxyzWriter(path, interval=10, append=True)
    second = run_frames(writer, sim, [10, 20, 30, 40], seed0=100)
    # a second run() with the same reporter: start again after finish, keep appending
    third = run_frames(writer, sim, [40, 50], seed0=200)
    check_extxyz(path, first + second[2:] + third[1:])


def test_extxyz_append_cuts_off_incomplete_frame(tmp_path):
    path = tmp_path / "traj.xyz"
    sim = make_sim()
    refs = run_frames(ExtxyzWriter(path, interval=10), sim, [0, 10])
    lines = path.read_text().splitlines(keepends=True)
    cu_block = "".join(lines[:6]).replace("step=0 ", "step=20 ")  # count, comment, 4 atoms
    with open(path, "a") as f:  # a killed run: all of system 0 at step 20, half of system 1
        f.write(cu_block + cu_block[: cu_block.index("Cu") + 6])
    more = run_frames(ExtxyzWriter(path, interval=10, append=True), sim, [20], seed0=50)
    check_extxyz(path, refs + more)


# ------------------------------------------------------------------------------ H5MD
def check_h5md(path, refs, units="metal") -> None:
    data = read_h5md(path)
    assert sorted(data) == list(range(len(refs[0]["pos"])))
    for s, d in data.items():
        assert d["units"] == units
        np.testing.assert_array_equal(d["step"], [r["step"] for r in refs])
        assert d["step"].dtype == np.int64
        np.testing.assert_array_equal(d["time"], [r["time"] for r in refs])
        for key, ref_key in (("positions", "pos"), ("velocities", "vel"), ("forces", "frc")):
            assert d[key].dtype == np.float64
            np.testing.assert_array_equal(d[key], np.stack([r[ref_key][s] for r in refs]))
        np.testing.assert_array_equal(d["cell"], np.stack([r["cell"][s] for r in refs]))
        np.testing.assert_array_equal(d["pbc"], refs[0]["pbc"][s])
        np.testing.assert_array_equal(d["atomic_numbers"], refs[0]["z"][s])
        np.testing.assert_array_equal(d["masses"], refs[0]["mass"][s])
        pe = np.array([r["pe"][s] for r in refs])
        ke = np.array([r["ke"][s] for r in refs])
        np.testing.assert_array_equal(d["potential_energy"], pe)
        np.testing.assert_array_equal(d["kinetic_energy"], ke)
        np.testing.assert_array_equal(d["total_energy"], pe + ke)


def test_h5md_round_trip_is_exact_and_follows_layout(tmp_path):
    sim = make_sim()
    path = tmp_path / "traj.h5"
    refs = run_frames(H5MDWriter(path, interval=10), sim, [0, 10, 20])
    check_h5md(path, refs)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["h5md"].attrs["version"], [1, 1])
        assert f["h5md/creator"].attrs["name"] == "hayabusa"
        assert "name" in f["h5md/author"].attrs
        part = f["particles/system_1"]
        assert part["box"].attrs["dimension"] == 3
        assert list(part["box"].attrs["boundary"]) == ["periodic", "periodic", "none"]
        pos = part["position/value"]
        assert pos.shape == (3, 3, 3) and pos.maxshape == (None, 3, 3) and pos.chunks
        assert pos.attrs["unit"] == "angstrom"
        assert part["velocity/value"].attrs["unit"] == "angstrom fs-1"
        assert part["force/value"].attrs["unit"] == "eV angstrom-1"
        assert part["position/time"].attrs["unit"] == "fs"
        assert part["box/edges/value"].shape == (3, 3, 3)
        assert f["observables/system_0/total_energy/value"].attrs["unit"] == "eV"
        assert part["mass"].attrs["unit"] == "amu"
        # every element of a system shares the step dataset
        assert part["velocity/step"] == part["position/step"]
        assert f["observables/system_1/kinetic_energy/step"] == part["position/step"]


def test_h5md_lj_units_store_reduced_numbers_without_unit_attrs(tmp_path):
    sim = make_sim("lj")
    path = tmp_path / "lj.h5"
    refs = run_frames(H5MDWriter(path, interval=1), sim, [0, 1])
    check_h5md(path, refs, units="lj")
    with h5py.File(path, "r") as f:
        assert "unit" not in f["particles/system_0/position/value"].attrs


def test_h5md_append_continues_without_duplicates(tmp_path):
    path = tmp_path / "traj.h5"
    sim = make_sim()
    first = run_frames(H5MDWriter(path, interval=10), sim, [0, 10, 20])
    writer = H5MDWriter(path, interval=10, append=True)
    second = run_frames(writer, sim, [10, 20, 30, 40], seed0=100)  # restart at step 10
    third = run_frames(writer, sim, [40, 50], seed0=200)  # second run() on the same writer
    check_h5md(path, first + second[2:] + third[1:])


def test_h5md_append_trims_half_written_frame(tmp_path):
    path = tmp_path / "traj.h5"
    sim = make_sim()
    refs = run_frames(H5MDWriter(path, interval=10), sim, [0, 10])
    with h5py.File(path, "r+") as f:  # killed after writing values, before the step
        f["particles/system_0/position/value"].resize(4, axis=0)
        f["observables/system_0/total_energy/value"].resize(3, axis=0)
    more = run_frames(H5MDWriter(path, interval=10, append=True), sim, [20], seed0=7)
    check_h5md(path, refs + more)
    with h5py.File(path, "r") as f:  # raw datasets agree too, for other H5MD readers
        assert f["particles/system_0/position/value"].shape[0] == 3


def test_h5md_append_rejects_a_different_batch(tmp_path):
    path = tmp_path / "traj.h5"
    run_frames(H5MDWriter(path, interval=10), make_sim(), [0])
    other = make_sim()
    other.state = State.from_atoms([bulk("Cu", "fcc", a=3.6, cubic=True)] * 2)
    with pytest.raises(InputError, match="system 1 has different atoms"):
        run_frames(H5MDWriter(path, interval=10, append=True), other, [10])
    with pytest.raises(InputError, match="units"):
        run_frames(H5MDWriter(path, interval=10, append=True), make_sim("lj"), [10])
    assert read_h5md(path)[0]["step"].tolist() == [0]  # untouched


# ---------------------------------------------------------------- both formats
WRITERS = [(ExtxyzWriter, "traj.extxyz"), (H5MDWriter, "traj.h5")]


@pytest.mark.parametrize(("cls", "name"), WRITERS)
def test_refuses_to_overwrite_existing_file(tmp_path, cls, name):
    path = tmp_path / name
    run_frames(cls(path, interval=10), make_sim(), [0, 10])
    before = path.read_bytes()
    with pytest.raises(InputError, match="--overwrite") as err:
        cls(path, interval=10)
    assert str(path) in str(err.value)
    assert path.read_bytes() == before
    with pytest.raises(InputError, match=str(path)):
        cls(path, interval=10, overwrite=True, append=True)
    refs = run_frames(cls(path, interval=10, overwrite=True), make_sim(), [5], seed0=9)
    if cls is H5MDWriter:
        check_h5md(path, refs)
    else:
        check_extxyz(path, refs)


@pytest.mark.parametrize(("cls", "name"), WRITERS)
def test_frames_on_disk_are_readable_before_finish(tmp_path, cls, name):
    """What a killed process leaves behind: copy the bytes while the writer is still open."""
    path = tmp_path / name
    crashed = tmp_path / ("crashed_" + name)
    sim = make_sim()
    writer = cls(path, interval=10)
    refs = run_frames(writer, sim, [0, 10], finish=False)
    shutil.copyfile(path, crashed)
    writer.finish(sim)  # the loop calls finish when it stops with an error
    for p in (crashed, path):
        if cls is H5MDWriter:
            check_h5md(p, refs)
        else:
            check_extxyz(p, refs)


def test_rejects_bad_interval(tmp_path):
    with pytest.raises(InputError, match="interval"):
        H5MDWriter(tmp_path / "x.h5", interval=0)


@pytest.mark.parametrize("writer_class, name", [(ExtxyzWriter, "t.extxyz"),
                                                (H5MDWriter, "t.h5")])
def test_appending_to_another_runs_trajectory_is_refused(tmp_path, writer_class, name):
    sim = make_sim()
    advance(sim, 0, seed=1)
    writer = writer_class(tmp_path / name, 1)
    writer.report(sim)
    writer.finish(sim)
    before = (tmp_path / name).read_bytes()
    sim.run_id = "another-run"
    again = writer_class(tmp_path / name, 1, append=True)
    with pytest.raises(InputError, match="holds run test-run and this is run another-run"):
        again.report(sim)
    again.finish(sim)
    assert (tmp_path / name).read_bytes() == before
