"""Numbers in YAML configs, the same in every command that reads one (``hayabusa md``,
``study``, ``train``; all read through ``config.read_yaml``):

* a non-finite number (.inf, -.inf, .nan) anywhere is a one-line InputError naming the file and
  the key path, exit status 2 at the command line, before any output is touched;
* ``1e-3``, ``5e+3``, ``1.0e6`` (YAML 1.2 floats that PyYAML's YAML 1.1 rules read as strings)
  are numbers.
"""

import copy

import pytest
import yaml
from test_config import BASE

from hayabusa.cli import main
from hayabusa.config import load_config, read_yaml
from hayabusa.errors import InputError
from hayabusa.train.config import load_train_config
from hayabusa.workflows.study_config import load_study

STUDY = {"model": {"file": "model.pt"}, "systems": {"oxide": {"file": "s.extxyz"}},
         "temperatures_K": [300, 900], "timestep_fs": 1.0, "production_steps": 30,
         "trajectory_every": 1, "thermostat": {"type": "nose_hoover", "tau_fs": 20},
         "device": "cpu"}
TRAIN = {"device": "cpu", "data": {"files": ["d.extxyz"]},
         "model": {"r_cut_A": 4.5, "r_smth_A": 3.0},
         "training": {"steps": 10, "lr_start": 0.005, "lr_stop": 0.0001}}
# (command, config, the key set to a non-finite number, that key as the message names it)
KEYS = [
    ("md", BASE, ("integrator", "timestep_lj"), "integrator.timestep_lj"),
    ("md", BASE, ("potential", "epsilon_lj"), "potential.epsilon_lj"),
    ("study", STUDY, ("thermostat", "tau_fs"), "thermostat.tau_fs"),
    ("study", STUDY, ("temperatures_K", 1), "temperatures_K[1]"),
    ("train", TRAIN, ("training", "lr_start"), "training.lr_start"),
    ("train", TRAIN, ("model", "r_cut_A"), "model.r_cut_A"),
]
LOADERS = {"md": load_config, "study": load_study, "train": load_train_config}


def write_config(folder, data: dict, text_of_key=None):
    """``data`` as ``folder/c.yaml``, with the files the study and train configs name;
    ``text_of_key`` = (key path, YAML text) puts that text verbatim at the key."""
    (folder / "model.pt").write_bytes(b"")
    (folder / "s.extxyz").write_text("")
    (folder / "d.extxyz").write_text("")
    data = copy.deepcopy(data)
    if text_of_key is not None:
        (*parents, last), text = text_of_key
        node = data
        for p in parents:
            node = node[p]
        node[last] = "@@"
        dumped = yaml.safe_dump(data, sort_keys=False).replace("'@@'", text)
    else:
        dumped = yaml.safe_dump(data, sort_keys=False)
    path = folder / "c.yaml"
    path.write_text(dumped)
    return path


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".Inf", ".NaN"])
@pytest.mark.parametrize("command, data, key, named", KEYS)
def test_non_finite_numbers_are_rejected_with_the_key(tmp_path, command, data, key, named,
                                                      value):
    path = write_config(tmp_path, data, (key, value))
    with pytest.raises(InputError) as info:
        LOADERS[command](path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {named}: must be a finite number, got "), message


def test_non_finite_number_in_nested_lists_and_at_top_level(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a: {b: [1, 2.5, [3, {c: -.inf}]]}\n")
    with pytest.raises(InputError, match=r"x\.yaml: a\.b\[2\]\[1\]\.c: must be a finite "
                                         r"number, got -inf$"):
        read_yaml(path)
    path.write_text(".nan\n")
    with pytest.raises(InputError, match=r"x\.yaml: \(top level\): must be a finite number"):
        read_yaml(path)


@pytest.mark.parametrize("command, data, key, named", KEYS[::2])
def test_cli_non_finite_is_exit_2_one_line_and_keeps_earlier_results(tmp_path, capsys, command,
                                                                      data, key, named):
    """With --overwrite, a config rejected for .inf leaves the earlier results in place."""
    path = write_config(tmp_path, data, (key, ".inf"))
    out = tmp_path / "out"
    out.mkdir()
    earlier = {"md": "log.hayabusa", "study": "config.yaml", "train": "model.pt"}[command]
    (out / earlier).write_text("earlier result")
    assert main([command, str(path), "--output", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {path}: {named}: must be a finite number, got inf"]
    assert (out / earlier).read_text() == "earlier result"


def test_md_config_reads_exponent_floats(tmp_path):
    data = copy.deepcopy(BASE)
    data["integrator"]["friction_lj"] = "@f"
    data["structure"]["density_lj"] = "@d"
    data["potential"]["cutoff_lj"] = "@c"
    data["integrator"]["timestep_lj"] = "@t"
    text = yaml.safe_dump(data).replace("'@f'", "1e0").replace("'@d'", "8.442e-1") \
        .replace("'@c'", "2.5E+0").replace("'@t'", "5e-3")
    path = tmp_path / "c.yaml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.integrator.friction == 1.0 and cfg.structure.density == 0.8442
    assert cfg.potential.cutoff == 2.5 and cfg.integrator.timestep == 0.005


def test_study_and_train_configs_read_exponent_floats(tmp_path):
    path = write_config(tmp_path, STUDY, (("thermostat", "tau_fs"), "2e1"))
    assert load_study(path).thermostat.tau_fs == 20.0
    path = write_config(tmp_path, STUDY, (("timestep_fs",), "1.0e0"))
    assert load_study(path).timestep_fs == 1.0
    path = write_config(tmp_path, TRAIN, (("training", "lr_stop"), "1e-4"))
    assert load_train_config(path).training.lr_stop == 1e-4
    path = write_config(tmp_path, TRAIN, (("model", "r_cut_A"), "5e+0"))
    assert load_train_config(path).model.r_cut_A == 5.0


def test_yaml_numbers_and_strings(tmp_path):
    """The YAML 1.2 float forms are floats; YAML 1.1 ones keep working; look-alikes stay
    strings."""
    path = tmp_path / "n.yaml"
    path.write_text("[1e-3, 1.0e6, 5e+3, -2E4, .5e1, 1e3, 1.5, 1.0e+6, 10, 0x10, "
                    "e5, 1e, 1.2.3, 1e-3x, '1e-3']\n")
    assert read_yaml(path) == [0.001, 1e6, 5000.0, -20000.0, 5.0, 1000.0, 1.5, 1e6, 10, 16,
                               "e5", "1e", "1.2.3", "1e-3x", "1e-3"]
