"""hayabusa study: config validation, run-directory layout, batched temperatures."""

import json
import math

import ase.io
import numpy as np
import pytest
import torch
import yaml
from ase.spacegroup import crystal
from ase.units import kB

from hayabusa import load_model
from hayabusa.cli import main
from hayabusa.errors import InputError, SimulationError
from hayabusa.md import ProgressBar
from hayabusa.md.reporters import read_thermo_log
from hayabusa.md.trajectory import read_h5md
from hayabusa.models import DeepPotSE, save_model
from hayabusa.rundir import RunDirectory
from hayabusa.workflows.study import (
    build_system,
    model_metrics,
    run_batch,
    run_study,
    study_outputs,
)
from hayabusa.workflows.study_config import (
    MIN_FRAMES,
    GrainBoundary,
    ModelFiles,
    load_study,
    plan,
)

GB_PLANES = [2.3, 6.9]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small random Li/O/Zr DeepPot-SE model, its metrics file and a 96-atom Li2O cell with
    two Li of every Li layer (along z) made Zr (the Li/Zr segregation profile needs Zr)."""
    d = tmp_path_factory.mktemp("study")
    torch.manual_seed(0)
    model = DeepPotSE([3, 8, 40], r_cut=4.0, r_smth=0.5, embedding=(4, 8), axis_neurons=2,
                      fitting=(8,))
    save_model(model, d / "model.pt")
    metrics = {"test": {"energy_meV_per_atom": {"mae": 1.5, "rmse": 2.0},
                        "forces_meV_per_A": {"mae": 40.0, "rmse": 55.0}},
               "train": {"energy_meV_per_atom": {"mae": 1.0, "rmse": 1.2}}, "run": {"steps": 9}}
    (d / "metrics.json").write_text(json.dumps(metrics))
    li2o = crystal(["O", "Li"], [(0, 0, 0), (0.25, 0.25, 0.25)], spacegroup=225,
                   cellpar=[4.61] * 3 + [90] * 3).repeat(2)
    li = np.flatnonzero(li2o.numbers == 3)
    for z in np.unique(li2o.positions[li, 2].round(3)):
        layer = li[li2o.positions[li, 2].round(3) == z]
        li2o.numbers[layer[:2]] = 40
    ase.io.write(d / "li2o.extxyz", li2o)
    return d


def base_config(**changes) -> dict:
    """A study of the Li2O cell. The random model hardly exerts forces, so its atoms fly
    freely and pass through each other: the collapse check is off unless a test sets it."""
    cfg = {"model": {"file": "model.pt"}, "collapse_distance_A": 0,
           "systems": {"oxide": {"file": "li2o.extxyz"}},
           "temperatures_K": [300, 900], "timestep_fs": 1.0,
           "equilibration_steps": 0, "production_steps": 30, "trajectory_every": 1,
           "thermo_every": 10, "thermostat": {"type": "nose_hoover", "tau_fs": 20},
           "device": "cpu"}
    cfg.update(changes)
    return cfg


def write(folder, data, name="study.yaml"):
    path = folder / name
    path.write_text(yaml.safe_dump(data) if isinstance(data, dict) else data)
    return path


# ------------------------------------------------------------------------------ config
@pytest.mark.parametrize("changes, message", [
    ({"timestep": 2.0}, "timestep: unknown key"),
    ({"production_steps": None}, "production_steps: required key missing"),
    ({"systems": {"oxide": {"builder": "fcc"}}},
     "systems.oxide: needs file: PATH or builder: cubic_llzo | llzo_grain_boundary"),
    ({"systems": {"bulk": {"builder": "cubic_llzo", "supercel": 2}}},
     "systems.bulk.supercel: unknown key"),
    ({"systems": {"bulk": {"builder": "cubic_llzo", "supercell": [1, 2]}}},
     "systems.bulk.supercell: expected a positive integer or a list of three, got [1, 2]"),
    ({"systems": {"gb": {"builder": "llzo_grain_boundary", "plane": [3, 1]}}},
     "systems.gb.plane: expected a list of 3 integers, got [3, 1]"),
    ({"systems": {"gb": {"file": "li2o.extxyz", "gb_normal_axis": 2}}},
     "systems.gb: give both gb_normal_axis and gb_planes_A"),
    ({"systems": {"bulk-1": {"file": "li2o.extxyz"}}},
     "systems.bulk-1: a system name may hold only letters, digits and _"),
    ({"systems": {"oxide": {"file": "missing.extxyz"}}}, "systems.oxide.file: file "),
    ({"systems": {}}, "systems: give at least one system"),
    ({"thermostat": {"type": "berendsen"}},
     "thermostat: type: must be nose_hoover | csvr | langevin"),
    ({"thermostat": {"type": "nose_hoover", "tau": 100}}, "thermostat.tau: unknown key"),
    ({"temperatures_K": [300, -5]}, "temperatures_K[1]: must be > 0, got -5"),
    ({"temperatures_K": [300, 300.0]}, "temperatures_K: each temperature once"),
    ({"temperatures_K": []}, "temperatures_K: give at least one temperature"),
    ({"production_steps": 45, "trajectory_every": 10},
     "production_steps: must be a multiple of trajectory_every = 10, got 45"),
    ({"equilibration_steps": 5, "trajectory_every": 2, "production_steps": 60},
     "equilibration_steps: must be a multiple of trajectory_every = 2, got 5"),
    ({"production_steps": 100, "trajectory_every": 10},
     f"give 11 frames; the analysis needs at least {MIN_FRAMES}"),
    ({"model": {"file": "nothere.pt"}}, "model.file: file "),
    ({"model": {"file": "model.pt", "labels": "EMT"}},
     "model: labels describe the metrics of metrics_file; give metrics_file"),
    ({"device": "gpu"}, "device: must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ({"seed": 1.5}, "seed: Input should be a valid integer"),
])
def test_config_errors_name_file_and_key(files, changes, message):
    data = base_config(**changes)
    data = {k: v for k, v in data.items() if v is not None}
    path = write(files, data, "bad.yaml")
    with pytest.raises(InputError) as err:
        load_study(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    assert message in text


@pytest.mark.parametrize("content, message", [
    ("", "expected a mapping of config keys, got an empty file"),
    ("model: [", "invalid YAML: line"),
])
def test_unreadable_configs(files, content, message):
    path = write(files, content, "bad.yaml")
    with pytest.raises(InputError, match=message):
        load_study(path)


def test_paths_are_relative_to_the_config(files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # elsewhere: paths still resolve against the config's folder
    cfg = load_study(write(files, base_config()))
    assert cfg.model.file == str(files / "model.pt")
    assert cfg.systems["oxide"].file == str(files / "li2o.extxyz")
    assert cfg.thermostat.type == "nose_hoover" and cfg.skin_A == 1.0


def test_plan_batches_temperatures(files):
    cfg = load_study(write(files, base_config(temperatures_K=[300, 500, 700])))
    [batch] = plan(cfg)
    assert batch.run_names == ["oxide-300K", "oxide-500K", "oxide-700K"]
    alone = plan(cfg.model_copy(update={"batch_temperatures": False}))
    assert [b.run_names for b in alone] == [["oxide-300K"], ["oxide-500K"], ["oxide-700K"]]
    # a run's velocity seed does not depend on the batching
    assert [batch.seed(0, k) for k in range(3)] == [b.seed(0, 0) for b in alone]


def test_model_metrics_take_the_test_split_and_the_labels(tmp_path):
    test = {"forces_meV_per_A": {"mae": 40.0, "rmse": 55.0}}
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"labels": "SevenNet-0 (surrogate of PBE), not DFT",
                                "train": {"forces_meV_per_A": {"mae": 1.0}}, "test": test}))
    files = ModelFiles(file="model.pt", metrics_file=str(path))
    assert model_metrics(files) == {**test, "labels": "SevenNet-0 (surrogate of PBE), not DFT"}
    assert model_metrics(files.model_copy(update={"labels": "EMT"}))["labels"] == "EMT"
    path.write_text(json.dumps(test))  # a flat file; labels from the model file's metadata
    assert model_metrics(files, {"labels": "CHGNet"}) == {**test, "labels": "CHGNet"}
    assert model_metrics(files) == test
    path.write_text(json.dumps({"test": {}}))
    with pytest.raises(InputError, match=f"^{path}: no test metrics"):
        model_metrics(files)


# ------------------------------------------------------------------------------ outputs
def test_existing_results_need_overwrite(files, tmp_path):
    """Results of an earlier study (here written before run manifests existed: judged by the
    names a study writes) need --overwrite; it removes only those files, and a folder only
    once it is empty (a file of the user's keeps it and itself)."""
    cfg = load_study(write(files, base_config(temperatures_K=[300])))
    out = tmp_path / "run"
    (out / "oxide-300K").mkdir(parents=True)
    (out / "oxide-300K" / "run.json").write_text("{}")
    (out / "oxide-300K" / "my_notes.txt").write_text("mine")
    (out / "analysis.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    rundir = RunDirectory(out, "study", noun="study")
    outputs = study_outputs(cfg)
    with pytest.raises(InputError, match=f"^{out} holds results of an earlier study "
                                         r"\(analysis.json, oxide-300K/run.json\); pass "
                                         r"--overwrite"):
        rundir.check(*outputs)
    rundir.check(*outputs, overwrite=True)
    rundir.start("new", *outputs, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [".hayabusa-run.json", "notes.txt",
                                                     "oxide-300K"]
    assert [p.name for p in (out / "oxide-300K").iterdir()] == ["my_notes.txt"]
    RunDirectory(tmp_path / "new", "study").check(*outputs)  # nothing there: fine


def test_species_the_model_lacks(files, tmp_path):
    data = base_config(systems={"bulk": {"builder": "cubic_llzo"}})
    path = write(files, data, "llzo.yaml")
    with pytest.raises(InputError, match=r"systems.bulk: element\(s\) La not among the "
                                         r"model's species \['Li', 'O', 'Zr'\]"):
        run_study(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written


def test_builders_give_grain_boundary_planes():
    gb = build_system(GrainBoundary(builder="llzo_grain_boundary", sigma=3, plane=(1, 1, 2)),
                      seed=0)
    length = gb.atoms.cell[2, 2]
    assert gb.gb_normal_axis == 2 and len(gb.gb_planes_A) == 2
    assert all(0 <= z < length for z in gb.gb_planes_A)


# ------------------------------------------------------------------------ batched runs
def test_batched_temperatures_equal_separate_runs(files, tmp_path):
    """Batching is only a speed choice: with the deterministic Nosé–Hoover chain each system
    of the batch follows the trajectory it follows when run alone (same velocity seed)."""
    cfg = load_study(write(files, base_config()))
    model = load_model(cfg.model.file)
    structure = build_system(cfg.systems["oxide"], seed=0)
    [batch] = plan(cfg)
    progress = ProgressBar(10, total=30, force=True)
    perf = run_batch(batch, structure, model, cfg, tmp_path / "batched", "cpu", progress)
    assert perf["steps"] == 30 and perf["katom_steps_per_s"] > 0
    assert progress.done == 30
    progress.close()
    for single in plan(cfg.model_copy(update={"batch_temperatures": False})):
        run_batch(single, structure, model, cfg, tmp_path / "alone", "cpu")
    for name in batch.run_names:
        a = read_h5md(tmp_path / "batched" / name / "traj.h5")
        b = read_h5md(tmp_path / "alone" / name / "traj.h5")
        assert list(a) == [0] and a[0]["positions"].shape == (31, 96, 3)
        assert np.abs(a[0]["positions"] - b[0]["positions"]).max() < 1e-9
        assert np.abs(a[0]["velocities"] - b[0]["velocities"]).max() < 1e-9
        log_a = read_thermo_log(tmp_path / "batched" / name / "log.hayabusa")
        log_b = read_thermo_log(tmp_path / "alone" / name / "log.hayabusa")
        assert log_a["n_atoms"] == log_b["n_atoms"] == 96
        for column in ("Step", "Temp", "PotEng", "Press", "Econs"):
            assert np.allclose(log_a["columns"][column], log_b["columns"][column],
                               rtol=1e-6, atol=0), column
    hot = read_h5md(tmp_path / "batched" / "oxide-900K" / "traj.h5")[0]["velocities"]
    cold = read_h5md(tmp_path / "batched" / "oxide-300K" / "traj.h5")[0]["velocities"]
    assert not np.allclose(hot[0], cold[0])  # different seeds and temperatures


def test_csvr_batch_keeps_each_target(files, tmp_path):
    """CSVR (τ = 10 fs) keeps each run of a batch at its own target: equilibration lasts 5τ,
    long enough to reach a wrong target, and the mean over the production frames lies within
    4 standard errors (T·sqrt(2/N_f)/sqrt(L/2τ)) of the run's own one."""
    tau, production = 10.0, 200
    cfg = load_study(write(files, base_config(
        thermostat={"type": "csvr", "tau_fs": tau}, equilibration_steps=50,
        production_steps=production, trajectory_every=5)))
    [batch] = plan(cfg)
    structure = build_system(cfg.systems["oxide"], seed=0)
    run_batch(batch, structure, load_model(cfg.model.file), cfg, tmp_path, "cpu")
    n_dof = 3 * len(structure.atoms) - 3
    for name, target in zip(batch.run_names, (300.0, 900.0), strict=True):
        [traj] = read_h5md(tmp_path / name / "traj.h5").values()
        temps = 2 * traj["kinetic_energy"] / (n_dof * kB)
        error = target * math.sqrt(2 / n_dof) / math.sqrt(production / (2 * tau))
        assert abs(temps.mean() - target) < 4 * error, (name, temps.mean(), error)


def test_collapsed_atoms_stop_the_study(files, tmp_path):
    """Two atoms nearer than collapse_distance_A (here an extra Li put 0.1 Å from an O, with
    a 0.1 fs step so they stay there) after FIRE or at the end of a run are an error naming
    the system or run and the atoms."""
    atoms = ase.io.read(files / "li2o.extxyz")
    atoms.append("Li")
    atoms.positions[-1] = atoms.positions[0] + [0.1, 0.0, 0.0]
    ase.io.write(tmp_path / "collapsed.extxyz", atoms)
    data = base_config(systems={"bad": {"file": str(tmp_path / "collapsed.extxyz")}},
                       timestep_fs=0.1, temperatures_K=[300], collapse_distance_A=0.5,
                       relax={"fmax_eV_per_A": 1e-6, "max_steps": 3})
    path = write(files, data, "collapsed.yaml")
    pair = (r"atoms 0 \(O\) and 96 \(Li\) are 0\.1\d Å apart \(1 pair\(s\) closer than "
            r"collapse_distance_A = 0.5 Å\): the potential let atoms collapse")
    with pytest.raises(SimulationError, match=f"^systems.bad: after 3 FIRE steps {pair}$"):
        run_study(path, tmp_path / "out")
    assert not (tmp_path / "out" / "bad-300K").exists()  # no MD after a failed relaxation
    cfg = load_study(path)
    [batch] = plan(cfg)
    structure = build_system(cfg.systems["bad"], seed=0)
    with pytest.raises(SimulationError, match=f"^bad-300K: at the end of the run {pair}, so"):
        run_batch(batch, structure, load_model(cfg.model.file), cfg, tmp_path, "cpu")
    assert (tmp_path / "bad-300K" / "traj.h5").is_file()  # kept for inspection


def test_study_layout_and_temperatures(files, tmp_path, capsys):
    """A two-temperature Langevin study on a grain-boundary-marked Li2O cell writes the
    run-directory contract, the analysis and the report; each run keeps its own target.

    Mean T over the production frames: equilibration lasts 5/γ, so the start is forgotten
    (e^-5); the kinetic temperature of N_f = 3N − 3 degrees of freedom fluctuates by
    T·sqrt(2/N_f) with correlation time 1/(2γ), so the mean over L fs has a standard error
    of about T·sqrt(2/N_f)/sqrt(γL); the test allows 4 of those."""
    gamma, production = 0.05, 300
    metrics = files / "metrics.json"
    data = base_config(
        systems={"oxide": {"file": "li2o.extxyz", "gb_normal_axis": 2,
                           "gb_planes_A": GB_PLANES}},
        model={"file": "model.pt", "metrics_file": metrics.name, "labels": "EMT, not DFT"},
        thermostat={"type": "langevin", "friction_per_fs": gamma},
        equilibration_steps=100, production_steps=production, trajectory_every=10)
    path = write(files, data)
    out = tmp_path / "run"
    assert main(["study", str(path), "--output", str(out), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"Report: {out / 'report.html'}"
    assert (out / "config.yaml").read_text() == path.read_text()
    assert json.loads((out / "model_metrics.json").read_text()) == {
        "energy_meV_per_atom": {"mae": 1.5, "rmse": 2.0},
        "forces_meV_per_A": {"mae": 40.0, "rmse": 55.0}, "labels": "EMT, not DFT"}
    for name in ("analysis.json", "report.html", "view.html", "checkpoints/oxide.pt"):
        assert (out / name).is_file(), name

    analysis = json.loads((out / "analysis.json").read_text())
    assert [r["name"] for r in analysis["runs"]] == ["oxide-300K", "oxide-900K"]
    start = ase.io.read(files / "li2o.extxyz")
    n_dof = 3 * len(start) - 3
    for run, target in zip(analysis["runs"], (300.0, 900.0), strict=True):
        d = out / run["name"]
        meta = json.loads((d / "run.json").read_text())
        assert meta["system"] == "oxide" and meta["temperature_K"] == target
        assert meta["timestep_fs"] == 1.0
        assert meta["gb_normal_axis"] == 2 and meta["gb_planes_A"] == GB_PLANES
        assert run["segregation"]["gb_planes_A"] == GB_PLANES
        assert (d / "li_density.npz").is_file()
        first = ase.io.read(d / "start.extxyz")
        assert np.allclose(first.positions, start.positions) and \
            first.get_chemical_symbols() == start.get_chemical_symbols()
        [traj] = read_h5md(d / "traj.h5").values()
        assert traj["time"].tolist() == [100.0 + 10 * k for k in range(31)]
        assert traj["atomic_numbers"].tolist() == start.numbers.tolist()
        log = read_thermo_log(d / "log.hayabusa")["columns"]
        assert log["Step"].tolist() == list(range(0, 401, 10))
        temps = 2 * traj["kinetic_energy"] / (n_dof * kB)
        error = target * math.sqrt(2 / n_dof) / math.sqrt(gamma * production)
        assert abs(temps.mean() - target) < 4 * error, (run["name"], temps.mean(), error)

    assert main(["study", str(path), "--output", str(out)]) == 2  # no --overwrite
    assert f"error: {out} holds results of an earlier study" in capsys.readouterr().err

