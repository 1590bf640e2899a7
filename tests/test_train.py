"""Training data (ASE-readable files, validation, E0) and the trainer on EMT-labelled Cu."""

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from hayabusa import InputError
from hayabusa.models import DeepPotSE
from hayabusa.train import (
    Trainer,
    TrainSettings,
    fit_reference_energies,
    load_frames,
    set_environment_scales,
    split,
    summary,
)


def emt_frames(n, seed=0):
    """Cu fcc 2×2×2: rattled and strained cells labelled by ASE's EMT."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
        strain = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))
        atoms.set_cell(atoms.cell.array @ (strain + strain.T) / 2, scale_atoms=True)
        atoms.rattle(rng.uniform(0.02, 0.12), seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
        out.append(atoms)
    return out


def test_load_frames_reads_labels_and_summarises(tmp_path):
    path = tmp_path / "cu.extxyz"
    ase.io.write(path, emt_frames(5))
    frames = load_frames(path, species=[29])
    assert len(frames) == 5 and frames[0].stress.shape == (3, 3)
    assert frames[0].energy == pytest.approx(ase.io.read(path, 0).get_potential_energy())
    text = summary(frames)
    assert "5 frames" in text and "'Cu'" in text and "stress" in text
    train, valid, test = split(frames, (0.6, 0.2, 0.2), seed=1)
    assert (len(train), len(valid), len(test)) == (3, 1, 1)
    assert [f.source for f in split(frames, (0.6, 0.2, 0.2), seed=1)[0]] == \
        [f.source for f in train]


def test_bad_frames_are_input_errors_naming_file_and_frame(tmp_path):
    frames = emt_frames(3)
    bare = frames[1].copy()  # no calculator: no energy
    path = tmp_path / "bad.extxyz"
    ase.io.write(path, [frames[0], bare, frames[2]])
    with pytest.raises(InputError, match=r"bad.extxyz, frame 1: frame has no energy"):
        load_frames(path)
    nan = frames[0].copy()
    nan.calc = SinglePointCalculator(nan, energy=np.nan, forces=frames[0].get_forces())
    ase.io.write(tmp_path / "nan.extxyz", [frames[0], nan])
    with pytest.raises(InputError, match=r"nan.extxyz, frame 1: NaN"):
        load_frames(tmp_path / "nan.extxyz")
    with pytest.raises(InputError, match=r"frame 0: species \['Cu'\] unknown"):
        load_frames(tmp_path / "nan.extxyz", species=[47])
    with pytest.raises(InputError, match="missing.extxyz: file not found"):
        load_frames(tmp_path / "missing.extxyz")


def test_reference_energies_by_least_squares():
    frames = []
    e0 = {29: -3.1, 47: -2.2}
    rng = np.random.default_rng(3)
    for _ in range(6):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
        atoms.numbers[rng.random(len(atoms)) < rng.uniform(0.1, 0.6)] = 47
        from hayabusa.train import Frame

        frames.append(Frame(atoms, sum(e0[z] for z in atoms.numbers), np.zeros((32, 3)),
                            None, "synthetic"))
    assert np.allclose(fit_reference_energies(frames, [29, 47]), [-3.1, -2.2], atol=1e-10)


def test_training_lowers_validation_errors():
    torch.manual_seed(0)
    frames = emt_frames(24, seed=1)
    from hayabusa.train.data import Frame

    labelled = [Frame(a, a.get_potential_energy(), a.get_forces(),
                      None, str(i)) for i, a in enumerate(frames)]
    train, valid = labelled[:18], labelled[18:]
    model = DeepPotSE([29], r_cut=4.5, r_smth=3.0, embedding=(8, 16), axis_neurons=4,
                      fitting=(32, 32), neighbor_norm=40.0)
    with torch.no_grad():
        model.e0.copy_(torch.tensor(fit_reference_energies(train, [29])))
    set_environment_scales(model, train)
    assert model.dstd[0, 0] != 1.0
    settings = TrainSettings(lr_start=1e-2, lr_stop=1e-3, total_steps=300, batch_atoms=96,
                             ema_decay=0.9)
    trainer = Trainer(model, train, valid, settings)
    before = trainer.metrics()
    for _ in range(settings.total_steps):
        trainer.train_step()
    after = trainer.metrics()
    assert trainer.learning_rate(settings.total_steps) == pytest.approx(1e-3)
    # measured: force RMSE 459 → 133 meV/Å on the held-out frames (CPU, seed 0)
    assert after["forces_meV_per_A"]["rmse"] < 0.5 * before["forces_meV_per_A"]["rmse"]
    # Energies are not asserted: with DeePMD's prefactors (energy 0.02 → 1 as the learning
    # rate decays) 300 steps leave the energy RMSE above the E0-only fit (115 vs 28 meV/atom).
    assert np.isfinite(after["energy_meV_per_atom"]["rmse"])
