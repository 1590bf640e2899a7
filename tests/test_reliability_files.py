"""Truncated and damaged files: every command that reads a file hayabusa or a user wrote
(``md --restart``: checkpoint and the trajectory it appends to; ``analyze``: traj.h5;
``train``: data files and ``--resume`` checkpoints; ``label``: input structures; ``test``:
the model file) stops with exit status 2 and one line ``error: …`` naming the file — never a
traceback, never silently wrong numbers where a checksum can tell. Each file is written by the
library, then cut short or has bytes overwritten (XOR 0x5a over 64 bytes)."""

import json
import shutil
from pathlib import Path

import ase.io
import pytest
import torch
from test_train_cli import cu_frames, setup

from hayabusa.cli import main
from hayabusa.errors import InputError, ModelError
from hayabusa.files import load_torch, write_atomic
from hayabusa.models import DeepPotSE, load_model, save_model

MD_CONFIG = """\
units: lj
device: cpu
structure: {builder: fcc, n_cells: 2, density_lj: 0.8442}
potential: {type: lennard_jones, epsilon_lj: 1.0, sigma_lj: 1.0, cutoff_lj: 2.5}
velocities: {temperature_lj: 1.0}
integrator: {type: csvr, timestep_lj: 0.005, temperature_lj: 1.0, tau_lj: 0.1}
run: {steps: 20}
output: {thermo_every: 10, checkpoint_every: 10, trajectory: {every: 5, format: FORMAT}}
"""


# ------------------------------------------------------------------------------- helpers
def truncate(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])


def cut_end(path: Path, n: int = 5) -> None:
    """Cut the last ``n`` bytes: a text file's last numbers lose digits."""
    path.write_bytes(path.read_bytes()[:-n])


def garble(path: Path, fraction: float, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    at = int(len(data) * fraction)
    data[at:at + n] = bytes(b ^ 0x5A for b in data[at:at + n])
    path.write_bytes(bytes(data))


def run_cli(capsys, *argv) -> tuple[int, list[str]]:
    """Exit status and stderr lines of ``hayabusa ARGV``."""
    capsys.readouterr()
    status = main([str(a) for a in argv])
    return status, capsys.readouterr().err.strip().splitlines()


def assert_one_line_error(status, err, name):
    assert status == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and name in err[0], err


# ------------------------------------------------------------------------------------ md
@pytest.fixture(scope="module", params=["h5md", "extxyz"])
def md_run(request, tmp_path_factory):
    """A finished 20-step LJ run: (config, output folder, trajectory file name)."""
    folder = tmp_path_factory.mktemp(f"md_{request.param}")
    config = folder / "md.yaml"
    config.write_text(MD_CONFIG.replace("FORMAT", request.param))
    assert main(["md", str(config), "--output", str(folder / "out")]) == 0
    traj = "trajectory.h5" if request.param == "h5md" else "trajectory.extxyz"
    return config, folder / "out", traj


def copy_run(md_run, tmp_path) -> tuple[Path, Path, Path]:
    config, out, traj = md_run
    work = tmp_path / "out"
    shutil.copytree(out, work)
    return config, work, work / traj


def restart(capsys, config, work):
    return run_cli(capsys, "md", config, "--output", work, "--restart",
                   work / "checkpoint.pt", "--steps", 40)


@pytest.mark.parametrize("damage", [lambda p: truncate(p, 0.5), lambda p: truncate(p, 0.02),
                                    lambda p: p.write_bytes(b"")],
                         ids=["half", "head", "empty"])
def test_md_restart_from_truncated_checkpoint(md_run, tmp_path, capsys, damage):
    config, work, traj = copy_run(md_run, tmp_path)
    damage(work / "checkpoint.pt")
    before = traj.read_bytes()
    status, err = restart(capsys, config, work)
    assert_one_line_error(status, err, "checkpoint.pt")
    assert traj.read_bytes() == before  # nothing appended


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_md_restart_from_damaged_checkpoint(md_run, tmp_path, capsys, fraction):
    config, work, _ = copy_run(md_run, tmp_path)
    garble(work / "checkpoint.pt", fraction)
    status, err = restart(capsys, config, work)
    assert_one_line_error(status, err, "checkpoint.pt")


@pytest.mark.parametrize(("md_run", "damage"), [("h5md", "half"), ("h5md", "signature"),
                                                ("extxyz", "signature")], indirect=["md_run"])
def test_md_restart_appending_to_a_damaged_trajectory(md_run, tmp_path, capsys, damage):
    """A truncated H5MD file, or one whose HDF5 signature is overwritten, cannot be appended
    to; the checkpoint stays as it was and the log keeps what it held (the restart appends
    its header). (A truncated extxyz trajectory is repaired: test_trajectory; its first
    header overwritten is an error.)"""
    config, work, traj = copy_run(md_run, tmp_path)
    if damage == "half":
        truncate(traj)
    else:
        garble(traj, 0.0, 8)
    checkpoint, log = (work / "checkpoint.pt").read_bytes(), (work / "log.hayabusa").read_bytes()
    status, err = restart(capsys, config, work)
    assert_one_line_error(status, err, traj.name)
    assert (work / "checkpoint.pt").read_bytes() == checkpoint
    assert (work / "log.hayabusa").read_bytes().startswith(log)


# ------------------------------------------------------------------------------- analyze
@pytest.mark.parametrize("damage", [lambda p: truncate(p, 0.5), lambda p: garble(p, 0.0, 8)],
                         ids=["half", "signature"])
@pytest.mark.parametrize("md_run", ["h5md"], indirect=True)
def test_analyze_damaged_h5md(md_run, tmp_path, capsys, damage):
    _, out, traj = md_run
    run = tmp_path / "study" / "x-300K"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"system": "x", "temperature_K": 300.0}))
    shutil.copy(out / traj, run / "traj.h5")
    damage(run / "traj.h5")
    status, err = run_cli(capsys, "analyze", tmp_path / "study")
    assert_one_line_error(status, err, "traj.h5")
    assert not (tmp_path / "study" / "analysis.json").exists()


@pytest.mark.parametrize("md_run", ["extxyz"], indirect=True)
def test_read_trajectory_of_a_cut_extxyz(md_run, tmp_path):
    from hayabusa.analysis import read_trajectory

    _, out, traj = md_run
    path = tmp_path / traj
    shutil.copy(out / traj, path)
    cut_end(path)
    with pytest.raises(InputError, match=f"{path}: ends inside a line"):
        read_trajectory(path)


# --------------------------------------------------------------------------------- train
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    cfg = setup(folder)
    assert main(["train", str(cfg), "--output", str(folder / "out"), "--until-step", "4"]) == 0
    return cfg, folder / "out"


@pytest.mark.parametrize("damage", [
    lambda p: truncate(p, 0.5), cut_end, lambda p: garble(p, 0.5),
    lambda p: garble(p, 0.0, 4)], ids=["half", "last-digits", "middle", "count-line"])
def test_train_on_a_damaged_data_file(tmp_path, capsys, damage):
    cfg = setup(tmp_path)
    damage(tmp_path / "cu_a.extxyz")
    status, err = run_cli(capsys, "train", cfg, "--output", tmp_path / "out")
    assert_one_line_error(status, err, "cu_a.extxyz")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", [lambda p: truncate(p, 0.5), lambda p: garble(p, 0.3),
                                    lambda p: garble(p, 0.7), lambda p: garble(p, 0.98)],
                         ids=["half", "0.3", "0.7", "0.98"])
def test_train_resume_from_a_damaged_checkpoint(trained, tmp_path, capsys, damage):
    cfg, out = trained
    work = tmp_path / "out"
    shutil.copytree(out, work)
    damage(work / "checkpoint.pt")
    kept = {p.name: p.read_bytes() for p in work.iterdir()}
    status, err = run_cli(capsys, "train", cfg, "--output", work, "--resume",
                          work / "checkpoint.pt")
    assert_one_line_error(status, err, "checkpoint.pt")
    assert {p.name: p.read_bytes() for p in work.iterdir()} == kept


# --------------------------------------------------------------------------- test, label
@pytest.mark.parametrize("damage", [lambda p: truncate(p, 0.5), lambda p: garble(p, 0.2),
                                    lambda p: garble(p, 0.6), lambda p: p.write_text("junk")],
                         ids=["half", "0.2", "0.6", "text"])
def test_test_command_with_a_damaged_model(trained, tmp_path, capsys, damage):
    cfg, out = trained
    model = tmp_path / "model.pt"
    shutil.copy(out / "model.pt", model)
    damage(model)
    status, err = run_cli(capsys, "test", model, cfg.parent / "cu_a.extxyz",
                          "--output", tmp_path / "test")
    assert_one_line_error(status, err, "model.pt")


def test_test_command_with_a_damaged_data_file(trained, tmp_path, capsys):
    _, out = trained
    data = tmp_path / "cu.extxyz"
    ase.io.write(data, cu_frames(2))
    cut_end(data)
    status, err = run_cli(capsys, "test", out / "model.pt", data, "--output", tmp_path / "t")
    assert_one_line_error(status, err, "cu.extxyz")


@pytest.mark.parametrize("damage", [lambda p: truncate(p, 0.5), cut_end,
                                    lambda p: garble(p, 0.5)],
                         ids=["half", "last-digits", "middle"])
def test_label_damaged_structures(tmp_path, capsys, damage):
    src = tmp_path / "in.extxyz"
    ase.io.write(src, cu_frames(3))
    damage(src)
    status, err = run_cli(capsys, "label", src, tmp_path / "out.xyz", "--reference", "emt")
    assert_one_line_error(status, err, "in.extxyz")
    assert not (tmp_path / "out.xyz").exists()


# ------------------------------------------------------------------------ smaller cases
def tiny_model():
    torch.manual_seed(0)
    return DeepPotSE([29], r_cut=3.0, r_smth=1.0, embedding=(4,), axis_neurons=2,
                     fitting=(4,))


@pytest.mark.parametrize("drop", ["config", "weights", "checksum"])
def test_model_file_without_a_key_is_a_model_error(tmp_path, drop):
    path = save_model(tiny_model(), tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    del payload[drop]
    torch.save(payload, path)
    with pytest.raises(ModelError, match=rf"^{path}: incomplete model file \(no {drop}\)$"):
        load_model(path)


def test_model_file_of_another_architecture_is_a_model_error(tmp_path):
    from hayabusa.models.files import _checksum

    path = save_model(tiny_model(), tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["attention_heads"] = 4  # a key this version does not know
    payload["checksum"] = _checksum(payload["config"], payload["weights"], payload["metadata"])
    torch.save(payload, path)
    with pytest.raises(ModelError, match=rf"^{path}: the stored architecture does not fit"):
        load_model(path)


def test_load_torch_checks_the_archive_checksums(tmp_path):
    """torch.load itself reads the damaged archive and returns other numbers."""
    path = tmp_path / "t.pt"
    torch.save({"x": torch.arange(4096, dtype=torch.float64)}, path)
    garble(path, 0.5)
    assert not torch.equal(torch.load(path, weights_only=True)["x"],
                           torch.arange(4096, dtype=torch.float64))
    with pytest.raises(InputError, match=rf"^{path}: damaged checkpoint \(checksum mismatch"):
        load_torch(path, "checkpoint")
    with pytest.raises(InputError, match=rf"^{tmp_path / 'no.pt'}: checkpoint not found$"):
        load_torch(tmp_path / "no.pt", "checkpoint")


def test_write_atomic_onto_a_directory(tmp_path):
    (tmp_path / "out.json").mkdir()
    with pytest.raises(InputError, match=rf"^{tmp_path / 'out.json'}: is a directory"):
        write_atomic(tmp_path / "out.json", lambda tmp: tmp.write_text("{}"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_write_atomic_leaves_no_temporary_file_when_the_write_fails(tmp_path):
    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "a.txt", fail)
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "old"

