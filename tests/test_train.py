"""Training data (ASE-readable files, validation, E0) and the trainer on EMT-labelled Cu:
batching, the DeePMD loss, schedules, EMA, early stopping, bit-exact resume."""

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from hayabusa import InputError, NeighborList, State
from hayabusa.models import DeepPotSE, ModelPotential
from hayabusa.train import (
    Frame,
    FrameSet,
    Trainer,
    TrainSettings,
    fit_reference_energies,
    fit_statistics,
    load_frames,
    split,
    summary,
)


def with_emt_labels(atoms):
    """``atoms`` with its EMT energy, forces and stress frozen in a SinglePointCalculator."""
    atoms.calc = EMT()
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
    return atoms


def emt_frames(n, seed=0):
    """Cu fcc 2×2×2: rattled and strained cells labelled by ASE's EMT."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
        strain = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))
        atoms.set_cell(atoms.cell.array @ (strain + strain.T) / 2, scale_atoms=True)
        atoms.rattle(rng.uniform(0.02, 0.12), seed=int(rng.integers(1 << 30)))
        out.append(with_emt_labels(atoms))
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


def labelled(atoms_list, stress=True):
    return [Frame(a, a.get_potential_energy(), a.get_forces(),
                  a.get_stress(voigt=False) if stress else None, str(i))
            for i, a in enumerate(atoms_list)]


def small_model(seed=0, frames=None):
    torch.manual_seed(seed)
    m = DeepPotSE([29], r_cut=4.5, r_smth=3.0, embedding=(8, 16), axis_neurons=4,
                  fitting=(16, 16), neighbor_norm=40.0)
    if frames is not None:
        m.set_reference_energies(fit_reference_energies(frames, [29]))
        fit_statistics(m, frames)
    return m


def mixed_sizes(n, seed=0, a=3.61):
    """EMT-labelled Cu cells of 4, 27 and 32 atoms (lattice constant ``a`` Å), rattled."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        atoms = [bulk("Cu", "fcc", a=a, cubic=True), bulk("Cu", "fcc", a=a).repeat(3),
                 bulk("Cu", "fcc", a=a, cubic=True).repeat(2)][k % 3]
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        out.append(with_emt_labels(atoms))
    return out


def test_batches_fill_up_to_batch_atoms_and_every_epoch_covers_every_frame():
    frames = labelled(mixed_sizes(9))
    sizes = [len(f.atoms) for f in frames]
    data = FrameSet(frames, [29], 4.5)
    order = [8, 0, 4, 1, 2, 3, 5, 6, 7]
    batches = data.batches(order, 40)
    assert [i for b in batches for i in b] == order
    for b in batches:  # full: the next frame would not have fitted
        assert sum(sizes[i] for i in b) <= 40 or len(b) == 1
    for b, nxt in zip(batches, batches[1:], strict=False):
        assert sum(sizes[i] for i in b) + sizes[nxt[0]] > 40
    trainer = Trainer(small_model(), frames, [], TrainSettings(batch_atoms=40, seed=3))
    plans = [trainer._plan(e) for e in range(3)]
    for plan in plans:
        assert sorted(i for b in plan for i in b) == list(range(9))
    assert plans[0] != plans[1]
    again = Trainer(small_model(), frames, [], TrainSettings(batch_atoms=40, seed=3))
    assert again._plan(1) == plans[1]


def test_stacked_batch_matches_frames_evaluated_one_by_one():
    frames = labelled(mixed_sizes(3, seed=4))
    m = small_model(1, frames).eval()
    batch = FrameSet(frames, [29], m.cutoff).batch([2, 0, 1])
    out = batch.evaluate(m, compute_stress=True)
    start = 0
    for s, k in enumerate([2, 0, 1]):
        state = State.from_atoms(frames[k].atoms, species=[29])
        one = ModelPotential(m)(state, NeighborList(m.cutoff).build(state), compute_stress=True)
        n = state.n_atoms
        assert float(out.energy[s]) == pytest.approx(float(one.energy[0]), rel=1e-13)
        assert torch.allclose(out.forces[start:start + n], one.forces, atol=1e-12)
        assert torch.allclose(out.stress[s], one.stress[0], atol=1e-12)
        assert float(batch.energy[s]) == frames[k].energy
        start += n


def test_loss_is_the_deepmd_weighted_sum_with_prefactors_following_the_learning_rate():
    frames = labelled(mixed_sizes(4, seed=5))
    frames[1] = Frame(frames[1].atoms, frames[1].energy, frames[1].forces, None, "no stress")
    m = small_model(2, frames)
    s = TrainSettings(lr_start=1e-2, lr_stop=1e-4, energy_prefactor=(0.5, 2.0),
                      force_prefactor=(100.0, 1.0), stress_prefactor=(3.0, 7.0))
    trainer = Trainer(m, frames, [], s)
    indices = [0, 1, 3]
    for lr in (1e-2, 1e-3):
        x = lr / 1e-2
        pe, pf, pv = (2 + (0.5 - 2) * x, 1 + 99 * x, 7 + (3 - 7) * x)
        assert s.prefactors(lr) == pytest.approx((pe, pf, pv), rel=1e-14)
        loss, _ = trainer.loss(indices, lr)
        de, df, dv = [], [], []
        for k in indices:
            f = frames[k]
            state = State.from_atoms(f.atoms, species=[29])
            r = ModelPotential(m)(state, NeighborList(m.cutoff).build(state),
                                  compute_stress=True)
            n = len(f.atoms)
            de.append((float(r.energy[0].detach()) - f.energy) / n)
            df.append(r.forces.detach().numpy() - f.forces)
            if f.stress is not None:
                dv.append((r.stress[0].detach().numpy() - f.stress) * f.atoms.get_volume() / n)
        expected = (pe * np.mean(np.square(de)) + pf * np.mean(np.square(np.concatenate(df)))
                    + pv * np.mean(np.square(dv)))
        assert float(loss.detach()) == pytest.approx(expected, rel=1e-10)


def test_learning_rate_schedules():
    trainer = Trainer(small_model(), [], [], TrainSettings(lr_start=1e-2, lr_stop=1e-4,
                                                           total_steps=100))
    assert [trainer.learning_rate(k) for k in (0, 50, 100, 150)] == \
        pytest.approx([1e-2, 1e-3, 1e-4, 1e-4], rel=1e-12)
    trainer.settings.schedule = "cosine"
    assert [trainer.learning_rate(k) for k in (0, 50, 100)] == \
        pytest.approx([1e-2, 0.5 * (1e-2 + 1e-4), 1e-4], rel=1e-12)


def test_training_lowers_validation_errors_and_ema_averages_the_weights():
    frames = labelled(emt_frames(24, seed=1))
    train, valid = frames[:18], frames[18:]
    model = small_model(0, train)
    settings = TrainSettings(lr_start=1e-2, lr_stop=1e-3, total_steps=200, batch_atoms=96,
                             ema_decay=0.9)
    trainer = Trainer(model, train, valid, settings)
    before = trainer.metrics()
    p0 = [p.detach().clone() for p in model.parameters()]
    trainer.train_step()  # EMA warm-up: decay min(0.9, 1/10) at step 0
    for e, a, b in zip(trainer.ema.parameters(), p0, model.parameters(), strict=True):
        assert torch.allclose(e, 0.1 * a + 0.9 * b, rtol=0, atol=1e-15)
    while trainer.step < settings.total_steps:
        trainer.train_step()
    after = trainer.metrics()
    # measured: force RMSE 460 → 230 meV/Å on the held-out frames (CPU, seed 0). Energies
    # are not asserted: with DeePMD's prefactors (energy 0.02 → 1 as the learning rate
    # decays) 200 steps leave the energy RMSE above the E0-only fit; the full schedule is
    # checked in test_train_acceptance.py.
    assert after["forces_meV_per_A"]["rmse"] < 0.6 * before["forces_meV_per_A"]["rmse"]


def train_steps(trainer, n):
    for _ in range(n):
        trainer.train_step()
        if trainer.step % trainer.settings.valid_every == 0:
            trainer.validate()


def test_checkpoint_resume_reproduces_a_straight_run_bit_for_bit(tmp_path):
    frames = labelled(mixed_sizes(8, seed=6))
    train, valid = frames[:6], frames[6:]
    settings = TrainSettings(lr_start=5e-3, lr_stop=1e-4, total_steps=10, batch_atoms=40,
                             stress_prefactor=(0.1, 1.0), valid_every=3)
    straight = Trainer(small_model(3, train), train, valid, settings)
    train_steps(straight, 10)
    first = Trainer(small_model(3, train), train, valid, settings)
    train_steps(first, 5)  # mid-epoch, between two validations
    first.save_checkpoint(tmp_path / "ckpt.pt")
    resumed = Trainer(small_model(99), train, valid, settings)  # other initial weights
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    train_steps(resumed, 5)
    a, b = straight.state_dict(), resumed.state_dict()
    for key in ("model", "ema", "best_weights"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    for name, state in a["optimizer"]["state"].items():
        for k, v in state.items():
            assert torch.equal(v, b["optimizer"]["state"][name][k])
    for key in ("step", "epoch", "position", "best_loss", "best_step", "bad_validations"):
        assert a[key] == b[key], key
    assert a["epoch"] >= 1  # the run crossed an epoch boundary
    assert straight.validate() == resumed.validate()


def test_checkpoint_of_other_settings_or_data_is_refused(tmp_path):
    frames = labelled(mixed_sizes(4))
    trainer = Trainer(small_model(0, frames), frames, [], TrainSettings())
    trainer.save_checkpoint(tmp_path / "ckpt.pt")
    other = Trainer(small_model(0, frames), frames, [], TrainSettings(lr_start=2e-3))
    with pytest.raises(InputError, match=r"ckpt.pt: written for another training settings "
                                         r"\(lr_start\)"):
        other.load_checkpoint(tmp_path / "ckpt.pt")
    fewer = Trainer(small_model(0, frames), frames[:3], [], TrainSettings())
    with pytest.raises(InputError, match="another training frames"):
        fewer.load_checkpoint(tmp_path / "ckpt.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="junk.pt: not a readable checkpoint"):
        fewer.load_checkpoint(tmp_path / "junk.pt")


def test_early_stopping_counts_validations_without_improvement_and_keeps_the_best():
    frames = labelled(mixed_sizes(6, seed=7))
    trainer = Trainer(small_model(4, frames), frames[:4], frames[4:],
                      TrainSettings(patience=2))
    first = trainer.validate()
    best = {k: v.clone() for k, v in trainer.ema.state_dict().items()}
    assert trainer.best_loss == first["valid_loss"] and trainer.bad_validations == 0
    with torch.no_grad():  # worse weights: no improvement, the best ones are kept
        for p in trainer.ema.fitting_nets.parameters():
            p.add_(0.5)
    assert trainer.validate()["valid_loss"] > first["valid_loss"]
    assert trainer.bad_validations == 1 and not trainer.stopped
    assert trainer.validate()["valid_loss"] > first["valid_loss"]
    assert trainer.stopped  # patience 2 reached
    best_model = trainer.best_model()
    for k, v in best_model.state_dict().items():
        assert torch.equal(v, best[k])
    assert errors_of(trainer, best_model) == pytest.approx(first["valid_forces_rmse_meV_per_A"])


def errors_of(trainer, model):
    return trainer.metrics(model=model)["forces_meV_per_A"]["rmse"]
