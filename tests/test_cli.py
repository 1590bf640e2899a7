"""The ``hayabusa md`` command end to end on a tiny LJ system (CPU, a few seconds)."""

import subprocess
import sys
from pathlib import Path

import ase.io
import pytest
import torch
import yaml

from hayabusa.cli import main

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "units": "lj",
    "device": "cpu",
    "seed": 5,
    "structure": {"builder": "fcc", "n_cells": 3, "density_lj": 0.8442},
    "potential": {"type": "lennard_jones", "epsilon_lj": 1.0, "sigma_lj": 1.0, "cutoff_lj": 2.5},
    "velocities": {"temperature_lj": 0.72},
    "integrator": {"type": "langevin", "timestep_lj": 0.005, "temperature_lj": 0.72,
                   "friction_lj": 1.0},
    "run": {"steps": 20},
    "neighbors": {"skin_lj": 0.3},
    "output": {"thermo_every": 10, "trajectory": {"every": 10}, "checkpoint_every": 10},
}


def _config(tmp_path, name="tiny.yaml", **changes):
    data = {**TINY, **changes}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _one_line_error(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def test_md_runs_and_writes_outputs(tmp_path, capsys):
    cfg = _config(tmp_path)
    out = tmp_path / "run"
    assert main(["md", str(cfg), "--output", str(out)]) == 0
    stdout = capsys.readouterr().out
    log = (out / "log.hayabusa").read_text()
    for text in (stdout, log):
        assert "Step" in text and "Loop time of" in text and "Performance:" in text
    assert f"outputs in {out}" in stdout.strip().splitlines()[-1]
    frames = ase.io.read(out / "trajectory.extxyz", index=":")
    assert [f.info["step"] for f in frames] == [0, 10, 20]
    assert len(frames[0]) == 108
    assert (frames[0].get_masses() == 1.0).all()
    assert (out / "checkpoint.pt").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text()) == TINY
    # the thermostat keeps the liquid near T* = 0.72 and the first row is the initial T
    rows = [line.split() for line in log.splitlines() if line.split()[:1] == ["0"]]
    assert float(rows[0][1]) == pytest.approx(0.72, rel=1e-6)


def test_refuses_to_overwrite_without_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _config(tmp_path, run={"steps": 0})
    out = Path("runs") / "tiny"  # the default output directory
    assert main(["md", str(cfg)]) == 0
    before = (out / "log.hayabusa").read_text()
    capsys.readouterr()
    assert main(["md", str(cfg)]) == 2
    line = _one_line_error(capsys)
    assert str(out) in line and "--overwrite" in line
    assert (out / "log.hayabusa").read_text() == before  # nothing touched
    # --overwrite with a system that fails to build keeps the old results
    broken = _config(tmp_path, structure={"file": "none.xyz"})  # same stem, same output dir
    assert main(["md", str(broken), "--overwrite"]) == 2
    assert "none.xyz: structure file not found" in _one_line_error(capsys)
    assert (out / "log.hayabusa").read_text() == before
    cfg = _config(tmp_path, run={"steps": 0})
    assert main(["md", str(cfg), "--overwrite", "--steps", "10"]) == 0
    log = (out / "log.hayabusa").read_text()
    assert log.count("Loop time of") == 1  # replaced, not appended


def test_restart_continues_bit_for_bit(tmp_path, capsys):
    cfg = _config(tmp_path)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["md", str(cfg), "-o", str(straight)]) == 0
    assert main(["md", str(cfg), "-o", str(split), "--steps", "10"]) == 0
    ckpt = split / "checkpoint.pt"
    assert main(["md", str(cfg), "-o", str(split), "--restart", str(ckpt)]) == 0
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(ckpt, weights_only=True)
    assert a["step"] == b["step"] == 20
    for key in ("positions", "velocities"):
        torch.testing.assert_close(a["state"][key], b["state"][key], rtol=0, atol=0)
    frames = ase.io.read(split / "trajectory.extxyz", index=":")
    assert [f.info["step"] for f in frames] == [0, 10, 20]  # appended, no duplicate of step 10
    log = (split / "log.hayabusa").read_text()
    assert log.count("Loop time of") == 2
    # a checkpoint already at run.steps has nothing left to do
    assert main(["md", str(cfg), "-o", str(split), "--restart", str(ckpt), "--steps", "5"]) == 2
    assert "beyond run.steps" in _one_line_error(capsys)


def test_kob_andersen_with_minimisation_and_h5md(tmp_path, capsys):
    import h5py

    cfg = _config(
        tmp_path, "ka.yaml",
        structure={"builder": "kob_andersen", "n_atoms": 256, "density_lj": 1.2},
        potential={"type": "kob_andersen"},
        minimize={"fmax_lj": 1.0, "max_steps": 200},
        velocities={"temperature_lj": 0.64},
        integrator={"type": "nose_hoover", "timestep_lj": 0.005, "temperature_lj": 0.64,
                    "tau_lj": 0.5},
        run={"steps": 10},
        output={"thermo_every": 5, "trajectory": {"every": 5, "format": "h5md"}},
    )
    out = tmp_path / "ka"
    assert main(["md", str(cfg), "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "FIRE: converged" in stdout and "Econs" in stdout
    with h5py.File(out / "trajectory.h5") as h5:
        assert list(h5["particles/system_0/position/step"][:]) == [0, 5, 10]
        species = h5["particles/system_0/species"][:]
    # type 0 = A (80 %), type 1 = B (20 %), as the Kob-Andersen potential expects
    assert (species == 1).sum() == round(0.8 * 256) and (species == 2).sum() == 256 - 205


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    bad = _config(tmp_path, integrator={"type": "nve", "timestep": 0.005})
    assert main(["md", str(bad), "-o", str(tmp_path / "a")]) == 2
    line = _one_line_error(capsys)
    assert line == (f"error: {bad}: integrator.timestep: needs a unit — use timestep_fs "
                    "(metal) or timestep_lj (lj)")
    assert not (tmp_path / "a").exists()
    assert main(["md", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: config file not found" in _one_line_error(capsys)
    good = _config(tmp_path)
    assert main(["md", str(good), "-o", str(tmp_path / "b"), "--restart", "nope.pt"]) == 2
    assert "nope.pt: checkpoint not found" in _one_line_error(capsys)
    assert main(["md", str(good), "-o", str(tmp_path / "c"), "--device", "tpu"]) == 2
    assert "--device: must be auto, cpu, cuda or cuda:N" in _one_line_error(capsys)
    missing_structure = _config(tmp_path, "s.yaml", structure={"file": "none.xyz"})
    assert main(["md", str(missing_structure), "-o", str(tmp_path / "d")]) == 2
    assert "none.xyz: structure file not found" in _one_line_error(capsys)


def test_python_m_hayabusa_exit_code(tmp_path):
    bad = _config(tmp_path, run={"steps": "many"})
    proc = subprocess.run([sys.executable, "-m", "hayabusa", "md", str(bad), "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {bad}: run.steps: Input should be a valid integer, got 'many'"]
    assert "Traceback" not in proc.stderr
