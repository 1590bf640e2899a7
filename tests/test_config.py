"""Config validation: examples load; every kind of invalid file is a one-line InputError that
names the file and the key."""

import copy
from pathlib import Path

import pytest
import yaml

from hayabusa.config import (
    FileStructure,
    KobAndersenPotential,
    KobAndersenStructure,
    LatticeStructure,
    load_config,
    parse_config,
)
from hayabusa.errors import InputError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

BASE = {
    "units": "lj",
    "seed": 1,
    "structure": {"builder": "fcc", "n_cells": 3, "density_lj": 0.8442},
    "potential": {"type": "lennard_jones", "epsilon_lj": 1.0, "sigma_lj": 1.0,
                  "cutoff_lj": 2.5},
    "velocities": {"temperature_lj": 0.72},
    "integrator": {"type": "langevin", "timestep_lj": 0.005, "temperature_lj": 0.72,
                   "friction_lj": 1.0},
    "run": {"steps": 100},
    "output": {"trajectory": {"every": 10}},
}


def test_examples_load():
    lj = load_config(EXAMPLES / "lj_liquid.yaml")
    assert lj.units == "lj" and isinstance(lj.structure, LatticeStructure)
    assert lj.structure.density == pytest.approx(0.8442)
    assert lj.integrator.type in ("nve", "langevin")
    ka = load_config(EXAMPLES / "kalj.yaml")
    assert isinstance(ka.structure, KobAndersenStructure) and ka.structure.n_atoms == 4096
    assert ka.structure.density == 1.2 and isinstance(ka.potential, KobAndersenPotential)
    assert ka.potential.truncation == "shift_force"
    assert ka.integrator.type == "nose_hoover"
    assert (ka.integrator.timestep, ka.integrator.temperature) == (0.005, 0.64)
    assert ka.neighbors.skin == 0.3


def test_values_are_in_run_units_and_defaults():
    cfg = parse_config(BASE)
    assert cfg.integrator.timestep == 0.005 and cfg.integrator.friction == 1.0
    assert cfg.structure.n_cells == (3, 3, 3)
    assert cfg.device == "auto" and cfg.dtype == "float64"
    assert cfg.neighbors.skin is None and cfg.neighbors.backend == "auto"
    assert cfg.output.trajectory.format == "extxyz"
    assert cfg.output.trajectory.path == "trajectory.extxyz"
    metal = {
        "units": "metal",
        "structure": {"builder": "fcc", "n_cells": [2, 2, 3], "lattice_constant_A": 5.26},
        "potential": {"type": "morse", "D_eV": 0.3, "alpha_per_A": 1.4, "r0_A": 2.9,
                      "cutoff_A": 7.0},
        "minimize": {"fmax_eV_per_A": 0.01},
        "integrator": {"type": "csvr", "timestep_fs": 2.0, "temperature_K": 300, "tau_fs": 100},
        "run": {"steps": 10},
        "neighbors": {"skin_A": 1.0},
        "output": {"trajectory": {"every": 5, "path": "t.h5"}},
    }
    cfg = parse_config(metal)
    assert cfg.structure.n_cells == (2, 2, 3) and cfg.potential.alpha == 1.4
    assert cfg.integrator.tau == 100 and cfg.minimize.fmax == 0.01
    assert cfg.minimize.max_steps == 1000 and cfg.neighbors.skin == 1.0
    assert cfg.output.trajectory.format == "h5md"


def test_pair_matrices_need_species():
    d = copy.deepcopy(BASE)
    d["potential"].update(epsilon_lj=[[1.0, 1.5], [1.5, 0.5]], species=["Ar", "Kr"])
    assert parse_config(d).potential.epsilon == [[1.0, 1.5], [1.5, 0.5]]


def _set(path, value):
    def mutate(d):
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        d[last] = value
    return mutate


def _drop(path):
    def mutate(d):
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        del d[last]
    return mutate


CASES = [
    # (mutation, expected text after "x.yaml: ")
    (_set("colour", "red"), "colour: unknown key; allowed keys: units,"),
    (_set("integrator.foo", 1), "integrator.foo: unknown key; allowed keys: type, timestep_lj"),
    (_set("integrator.temperature", 1.0),
     "integrator.temperature: needs a unit — use temperature_K (metal) or temperature_lj (lj)"),
    (_set("integrator.timestep_fs", 1.0),
     "integrator.timestep_fs: that is the metal unit but units is lj — use timestep_lj"),
    (_set("neighbors", {"skin_nm": 0.1}), "neighbors.skin_nm: unknown unit — use skin_A"),
    (_set("integrator.timestep_lj", "fast"), "integrator.timestep_lj: expected a positive number"),
    (_set("integrator.timestep_lj", -0.1), "integrator.timestep_lj: must be > 0"),
    (_set("run.steps", 1.5), "run.steps: Input should be a valid integer"),
    (_set("run.steps", "10"), "run.steps: Input should be a valid integer"),
    (_set("run", 5), "run: expected a mapping of keys"),
    (_drop("run"), "run: required key missing"),
    (_drop("integrator.friction_lj"), "integrator.friction_lj: required key missing"),
    (_set("integrator.type", "npt"), "integrator.type: must be one of nve | langevin"),
    (_set("integrator.type", "nve"),
     "integrator.temperature_lj: unknown key; allowed keys: type, timestep_lj"),
    (_drop("structure.builder"), "structure: needs either file: PATH or builder:"),
    (_drop("structure.density_lj"), "structure: give exactly one of density_lj or "
     "lattice_constant_lj"),
    (_set("structure.n_cells", [2, 2]), "structure.n_cells: expected a positive integer"),
    (_set("structure.lattice_constant_lj", 1.6), "structure: give exactly one of"),
    (_set("units", "si"), "units: must be metal or lj"),
    (_drop("units"), "units: required key missing"),
    (_set("units", "metal"), "structure.density_lj: that is the lj unit but units is metal — "
     "use density_per_A3"),
    (_set("device", "gpu"), "device: must be auto, cpu, cuda or cuda:N"),
    (_set("dtype", "float16"), "dtype: must be 'float64' or 'float32'"),
    (_set("seed", "abc"), "seed: Input should be a valid integer"),
    (_set("potential.epsilon_lj", [[1.0, 2.0], [3.0, 1.0]]),
     "potential.epsilon_lj: the per-type-pair matrix must be symmetric"),
    (_set("potential.epsilon_lj", [[1.0, 2.0], [2.0, 1.0]]),
     "potential: per-type-pair matrices (epsilon_lj) need species"),
    (_set("potential.truncation", "smooth"), "potential.truncation: must be 'none', 'shift'"),
    (_set("potential.type", "kob_andersen"), "potential.epsilon_lj: unknown key"),
    (_set("velocities.temperature_lj", True), "velocities.temperature_lj: expected a number"),
    (_set("output.trajectory.format", "dcd"), "output.trajectory.format: must be 'extxyz'"),
    (_set("output.thermo_every", 0), "output.thermo_every: Input should be greater than"),
    (_set("minimize", {"fmax_lj": 0.1, "max_steps": 0}), "minimize.max_steps: Input should be"),
]


@pytest.mark.parametrize("mutate,expected", CASES)
def test_invalid_config_is_one_line_naming_file_and_key(tmp_path, mutate, expected):
    data = copy.deepcopy(BASE)
    mutate(data)
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    with pytest.raises(InputError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {expected}"), message


def test_kob_andersen_needs_reduced_units():
    d = {**copy.deepcopy(BASE), "units": "metal",
         "structure": {"builder": "kob_andersen", "n_atoms": 100},
         "potential": {"type": "kob_andersen"}, "velocities": {"temperature_K": 10},
         "integrator": {"type": "nve", "timestep_fs": 1.0}}
    with pytest.raises(InputError, match="^c.yaml: structure.builder: kob_andersen is defined "
                       "in reduced units; set units: lj$"):
        parse_config(d, "c.yaml")


def test_bad_yaml_missing_and_empty_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("units: lj\nstructure: {builder: fcc\nrun:\n  steps: [1, 2\n")
    with pytest.raises(InputError, match=r"^.*bad\.yaml: invalid YAML: line \d+, column \d+"):
        load_config(bad)
    with pytest.raises(InputError, match=r"nope\.yaml: config file not found$"):
        load_config(tmp_path / "nope.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(InputError, match="empty.yaml: expected a mapping of config keys, got an "
                       "empty file"):
        load_config(empty)


def test_structure_file_is_resolved_next_to_the_config(tmp_path):
    (tmp_path / "sub").mkdir()
    d = copy.deepcopy(BASE)
    d["structure"] = {"file": "start.extxyz", "index": 0}
    path = tmp_path / "sub" / "run.yaml"
    path.write_text(yaml.safe_dump(d))
    cfg = load_config(path)
    assert isinstance(cfg.structure, FileStructure)
    assert Path(cfg.structure.file) == tmp_path / "sub" / "start.extxyz"
    assert cfg.structure.index == 0
