"""Nothing lost, nothing mixed: ``hayabusa md`` keeps every output inside its run directory,
--overwrite removes only what hayabusa wrote, a restart continues only its own run on the same
system, every check runs before anything is written, and a run killed with SIGKILL resumes to
the same final state and trajectory as an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_cli import TINY

from hayabusa.cli import main


def config(folder: Path, name: str = "run.yaml", **changes) -> Path:
    data = yaml.safe_load(yaml.safe_dump(TINY))
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def snapshot_tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


# ----------------------------------------------------------------------- paths
@pytest.mark.parametrize("path", ["..", ".", "../outside.extxyz", "/tmp/elsewhere.extxyz",
                                  "sub/../../x.extxyz", "sub/"])
def test_trajectory_path_must_stay_inside_the_run_directory(tmp_path, capsys, path):
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "data.txt").write_text("precious")
    out = tmp_path / "keep" / "run"
    out.mkdir()
    (out / "log.hayabusa").write_text("an earlier log")
    cfg = config(tmp_path, output={"trajectory": {"every": 10, "path": path}})
    before = snapshot_tree(tmp_path)
    assert main(["md", str(cfg), "--output", str(out), "--overwrite"]) == 2
    assert "output.trajectory.path" in one_line(capsys)
    assert snapshot_tree(tmp_path) == before  # nothing touched anywhere


def test_trajectory_may_not_take_another_outputs_name(tmp_path, capsys):
    cfg = config(tmp_path, output={"trajectory": {"every": 10, "path": "checkpoint.pt",
                                                  "format": "extxyz"}})
    assert main(["md", str(cfg), "--output", str(tmp_path / "run")]) == 2
    assert "another output" in one_line(capsys)
    assert not (tmp_path / "run").exists()


def test_trajectory_in_a_subfolder_is_recorded_and_replaced(tmp_path, capsys):
    cfg = config(tmp_path, output={"trajectory": {"every": 10, "path": "frames/t.extxyz"}})
    out = tmp_path / "run"
    assert main(["md", str(cfg), "--output", str(out)]) == 0
    assert (out / "frames" / "t.extxyz").is_file()
    assert main(["md", str(cfg), "--output", str(out), "--overwrite"]) == 0


# ------------------------------------------------------------------- overwrite
def test_overwrite_removes_only_what_hayabusa_wrote(tmp_path, capsys):
    cfg = config(tmp_path)
    out = tmp_path / "run"
    assert main(["md", str(cfg), "--output", str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    (out / "analysis").mkdir()
    (out / "analysis" / "plot.py").write_text("mine too")
    first_log = (out / "log.hayabusa").read_text()
    capsys.readouterr()
    assert main(["md", str(cfg), "--output", str(out)]) == 2
    message = one_line(capsys)
    assert "holds results of an earlier run" in message
    assert f"--restart {out / 'checkpoint.pt'} to continue" in message
    assert main(["md", str(config(tmp_path, seed=6)), "--output", str(out), "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "analysis" / "plot.py").read_text() == "mine too"
    assert (out / "log.hayabusa").read_text() != first_log  # replaced, not appended


def test_every_check_runs_before_earlier_results_are_removed(tmp_path, capsys):
    cfg = config(tmp_path)
    out = tmp_path / "run"
    assert main(["md", str(cfg), "--output", str(out)]) == 0
    before = snapshot_tree(out)
    capsys.readouterr()
    bad = config(tmp_path, "bad.yaml", structure={"file": "missing.extxyz"})
    assert main(["md", str(bad), "--output", str(out), "--overwrite"]) == 2
    assert "missing.extxyz" in one_line(capsys)
    wrong_units = config(tmp_path, "units.yaml", integrator={"type": "nve", "timestep_lj": -1})
    assert main(["md", str(wrong_units), "--output", str(out), "--overwrite"]) == 2
    one_line(capsys)
    assert snapshot_tree(out) == before


# --------------------------------------------------------------------- restart
def test_restart_into_another_runs_folder_is_refused(tmp_path, capsys):
    """Found by hand: restarting run B's checkpoint into run A's folder overwrote A's
    checkpoint and appended B's frames to A's trajectory."""
    small, large = tmp_path / "a", tmp_path / "b"
    assert main(["md", str(config(tmp_path, "a.yaml")), "--output", str(small)]) == 0
    assert main(["md", str(config(tmp_path, "b.yaml", seed=7)), "--output", str(large)]) == 0
    before = snapshot_tree(small)
    capsys.readouterr()
    assert main(["md", str(config(tmp_path, "b.yaml", seed=7)), "--output", str(small),
                 "--restart", str(large / "checkpoint.pt"), "--steps", "30"]) == 2
    line = one_line(capsys)
    assert "holds results of run" in line and "not of the checkpoint's run" in line
    assert snapshot_tree(small) == before


@pytest.mark.parametrize("changes, difference", [
    ({"structure__n_cells": 4}, "atoms_per_system"),
    ({"potential__epsilon_lj": 1.1}, "potential_sha256"),
    ({"integrator": {"type": "nve", "timestep_lj": 0.005}}, "integrator"),
])
def test_restart_of_another_system_names_the_difference(tmp_path, capsys, changes, difference):
    out = tmp_path / "run"
    assert main(["md", str(config(tmp_path)), "--output", str(out)]) == 0
    before = snapshot_tree(out)
    capsys.readouterr()
    other = config(tmp_path, "other.yaml", **changes)
    assert main(["md", str(other), "--output", str(out), "--restart",
                 str(out / "checkpoint.pt"), "--steps", "30"]) == 2
    line = one_line(capsys)
    assert "checkpoint is of another system" in line and difference in line
    assert snapshot_tree(out) == before


def test_restart_appends_to_its_own_run(tmp_path, capsys):
    cfg = config(tmp_path, output={"thermo_every": 10, "checkpoint_every": 10,
                                   "trajectory": {"every": 10, "format": "h5md"}})
    out = tmp_path / "run"
    assert main(["md", str(cfg), "--output", str(out)]) == 0
    assert main(["md", str(cfg), "--output", str(out), "--restart",
                 str(out / "checkpoint.pt"), "--steps", "40"]) == 0
    from hayabusa.md.trajectory import read_h5md

    frames = read_h5md(out / "trajectory.h5")[0]
    assert frames["step"].tolist() == [0, 10, 20, 30, 40]
    manifest = yaml.safe_load((out / ".hayabusa-run.json").read_text())
    assert frames["run_id"] == manifest["run_id"]
    log = (out / "log.hayabusa").read_text()
    assert log.count(f"run {manifest['run_id']}") == 2  # both headers name the same run


# ------------------------------------------------------------------- SIGKILL
KILL_CONFIG = {**TINY, "run": {"steps": 4000}, "structure": {"builder": "fcc", "n_cells": 3,
                                                              "density_lj": 0.8442},
               "output": {"thermo_every": 200, "checkpoint_every": 200,
                          "trajectory": {"every": 200, "format": "extxyz"}}}


def run_cli(args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "hayabusa", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)


def test_killed_run_resumes_bit_for_bit(tmp_path):
    """`hayabusa md` killed with SIGKILL after at least two checkpoints, then --restart:
    the final state (checkpoint) and the trajectory equal those of an uninterrupted run."""
    cfg = tmp_path / "kill.yaml"
    cfg.write_text(yaml.safe_dump(KILL_CONFIG, sort_keys=False))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert run_cli(["md", cfg, "--output", straight]).wait(timeout=600) == 0

    proc = run_cli(["md", cfg, "--output", killed])
    deadline = time.time() + 300
    while time.time() < deadline:  # wait for the checkpoint of step 400 or later
        ckpt = killed / "checkpoint.pt"
        if ckpt.is_file() and proc.poll() is None:
            import torch

            try:
                if torch.load(ckpt, weights_only=True)["step"] >= 400:
                    break
            except Exception:  # being replaced (atomic rename): look again
                pass
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    restart = run_cli(["md", cfg, "--output", killed, "--restart", killed / "checkpoint.pt"])
    assert restart.wait(timeout=600) == 0, restart.stderr.read().decode()

    import ase.io
    import torch

    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 4000
    for key in ("positions", "velocities"):
        assert torch.equal(a["state"][key], b["state"][key])
    assert torch.equal(a["result"]["forces"], b["result"]["forces"])
    frames_a = ase.io.read(straight / "trajectory.extxyz", index=":")
    frames_b = ase.io.read(killed / "trajectory.extxyz", index=":")
    assert [f.info["step"] for f in frames_b] == [f.info["step"] for f in frames_a] == \
        list(range(0, 4001, 200))
    for fa, fb in zip(frames_a, frames_b, strict=True):
        assert (fa.positions == fb.positions).all()
        assert (fa.get_momenta() == fb.get_momenta()).all()
