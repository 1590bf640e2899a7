"""The shipped LLZO model and dataset (examples/llzo): the model file says what its labels
are, its forces are −∇E, its recorded test metrics are what it gives on the shipped test
split, NVE conserves energy; plus the CPU embedding path and model-file metadata it uses."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import ase.units
import numpy as np
import pytest
import torch

from hayabusa import ModelError, NeighborList, State, load_model
from hayabusa.materials import cubic_llzo
from hayabusa.models import DeepPotSE, ModelPotential, save_model
from hayabusa.neighbors.typed import TypedSections
from hayabusa.train import load_frames, split

LLZO = Path(__file__).resolve().parent.parent / "examples" / "llzo"
MODEL, METRICS, DATASET = LLZO / "model.pt", LLZO / "model_metrics.json", LLZO / "dataset.extxyz"
LABELS = "SevenNet-0 (surrogate of PBE), not DFT"
GPA = ase.units.GPa  # eV/Å³
#: bound on |E_cons(t) − E_cons(0)| per atom over 100 fs of NVE at dt 1 fs (eV); the shipped
#: model gives 2.1e-5 (and 5.0e-6 at dt 0.5 fs) in test_nve_conserves_energy
NVE_BAND_EV_PER_ATOM = 5e-5


@pytest.fixture(scope="module")
def model():
    return load_model(MODEL)


@pytest.fixture(scope="module")
def metrics():
    return json.loads(METRICS.read_text(encoding="utf-8"))


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def float64_twin(model) -> ModelPotential:
    twin = DeepPotSE(**{**model.model.config, "precision": "float64"})
    twin.load_state_dict(model.model.state_dict())
    return ModelPotential(twin).eval()


def evaluate(model, atoms, stress=False):
    state = State.from_atoms(atoms, species=model.species)
    return model(state, NeighborList(model.cutoff).build(state), compute_stress=stress)


def rattled_cell(seed=3, sigma=0.05):
    atoms = cubic_llzo(seed=seed)
    atoms.positions += np.random.default_rng(seed).normal(0, sigma, atoms.positions.shape)
    return atoms


def test_model_file_and_dataset_say_what_the_labels_are(model, metrics):
    meta = model.metadata
    assert meta["labels"] == metrics["labels"] == LABELS
    assert meta["label_reference"].startswith("SevenNet-0 (7net-0")
    assert "surrogate of PBE" in meta["label_reference"] and "not DFT" in meta["label_reference"]
    assert meta["dataset_sha256"] == metrics["dataset"]["sha256"] == sha256(DATASET)
    assert metrics["model"]["sha256"] == sha256(MODEL)
    assert metrics["model"]["config"] == model.model.config
    text = DATASET.read_text(encoding="utf-8")
    refs = re.findall(r'label_reference="([^"]*)"', text)
    assert len(refs) == metrics["dataset"]["frames"] == len(re.findall(r"Lattice=", text))
    assert set(refs) == {meta["label_reference"]}


def test_metadata_is_covered_by_the_checksum(model, tmp_path):
    payload = torch.load(MODEL, weights_only=True)
    payload["metadata"]["labels"] = "DFT (PBE)"
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(ModelError, match="checksum"):
        load_model(tmp_path / "edited.pt")
    # saving keeps the metadata; a model without metadata keeps the old format's checksum
    path = save_model(model, tmp_path / "copy.pt")
    assert load_model(path).metadata == model.metadata
    bare = float64_twin(model)
    assert load_model(save_model(bare, tmp_path / "bare.pt")).metadata == {}


def test_forces_and_stress_are_energy_derivatives(model):
    twin = float64_twin(model)  # the same weights in float64: finite differences resolve
    atoms = rattled_cell()
    res = evaluate(twin, atoms, stress=True)
    h = 1e-4
    for atom, axis in ((0, 0), (60, 1), (90, 2), (150, 0)):  # Li, La, Zr, O
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        numeric = -(float(evaluate(twin, plus).energy[0])
                    - float(evaluate(twin, minus).energy[0])) / (2 * h)
        assert abs(float(res.forces[atom, axis]) - numeric) < 1e-6
    eps = 1e-5
    strain = np.zeros((3, 3))
    strain[0, 1] = strain[1, 0] = eps
    energies = []
    for sign in (1, -1):
        deformed = atoms.copy()
        deformed.set_cell(atoms.cell.array @ (np.eye(3) + sign * strain), scale_atoms=True)
        energies.append(float(evaluate(twin, deformed).energy[0]))
    numeric = (energies[0] - energies[1]) / (2 * eps) / atoms.get_volume() / 2
    assert abs(float(res.stress[0, 0, 1]) - numeric) < 1e-7
    # the shipped float32 model agrees with its float64 twin to float32 precision
    res32 = evaluate(model, atoms)
    assert abs(float(res32.energy[0]) - float(res.energy[0])) / len(atoms) < 1e-5
    assert float((res32.forces - res.forces).abs().max()) < 1e-3


def widened(neighbors, state, request, extra: int) -> None:
    """Give ``request``'s type sections ``extra`` more (empty) columns each."""
    sections = neighbors.sections[request]
    neighbors.sections[request] = TypedSections(request, [w + extra for w in sections.sel],
                                                sections.types)


def test_embedding_paths_agree_in_value_and_gradient(model):
    """T and its gradients by s and R̂ are the same on every path: autograd through the nets
    (training) or the forward-mode tangent operator (inference), on sections of the widths
    the list chose or wider ones (empty columns add nothing). In the float64 twin: the paths
    sum in other orders, which the float32 model would resolve."""
    core = float64_twin(model).model
    atoms = rattled_cell(seed=4)
    state = State.from_atoms(atoms, species=core.species)
    neighbors = NeighborList(core.cutoff, skin=1.0).build(state)  # slots beyond r_cut too
    weight = None
    results = []
    for extra in (0, 5):
        if extra:
            widened(neighbors, state, core.typed_request, extra)
        typed = neighbors.typed(state, core.typed_request)
        assert len(set(typed.types.tolist())) == len(core.species)
        env, s = core.environment(state.positions, state.cell, typed.types, state.system_idx,
                                  typed.index, typed.shifts, False)
        env, s = env.detach().requires_grad_(True), s.detach().requires_grad_(True)
        for fused in (False, True):
            t_mat = core.contraction(s, env, list(typed.sel), fused)
            if weight is None:
                weight = torch.randn(t_mat.shape, generator=torch.Generator().manual_seed(0),
                                     dtype=t_mat.dtype)
            grads = torch.autograd.grad((t_mat * weight).sum(), (s, env))
            real = typed.index >= 0  # gradients of empty columns are zero on every path
            results.append((t_mat, grads[0][real], grads[1][real]))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)


def test_wider_sections_give_the_same_energy_and_forces(model):
    """Sections wider than needed (as after they grew during a run) hold the same pairs and
    the same atoms, so the float32 model agrees to a few of its ulps (atom energies ~15 eV:
    ulp 1e-6 eV)."""
    atoms = rattled_cell(seed=5)
    state = State.from_atoms(atoms, species=model.species)
    neighbors = NeighborList(model.cutoff, skin=1.0).build(state)
    exact = model(state, neighbors)
    widened(neighbors, state, model.model.typed_request, 7)
    wide = model(state, neighbors)
    assert not bool(neighbors.overflowed())
    assert torch.allclose(exact.atom_energy, wide.atom_energy, rtol=0, atol=1e-5)
    assert torch.allclose(exact.forces, wide.forces, rtol=0, atol=1e-5)


def test_recorded_test_metrics_match_reevaluation(model, metrics):
    frames = load_frames(DATASET)
    assert len(frames) == metrics["dataset"]["frames"]
    fractions = metrics["split"]["fractions"]
    test = split(list(range(len(frames))), fractions, seed=metrics["split"]["seed"])[2]
    rows = metrics["test_frames"]
    assert [r["index"] for r in rows] == test and metrics["test"]["n_frames"] == len(test)
    # the aggregate test metrics are those of the per-frame rows
    e = np.array([r["energy_error_meV_per_atom"] for r in rows])
    n = np.array([r["n_atoms"] for r in rows])
    f = np.array([r["forces_rmse_meV_per_A"] for r in rows])
    assert metrics["test"]["energy_meV_per_atom"]["mae"] == pytest.approx(np.abs(e).mean())
    assert metrics["test"]["energy_meV_per_atom"]["rmse"] == pytest.approx(
        np.sqrt((e**2).mean()))
    assert metrics["test"]["forces_meV_per_A"]["rmse"] == pytest.approx(
        np.sqrt((n * f**2).sum() / n.sum()))
    # re-evaluate a few test frames (the smallest ones: fast) from scratch
    for row in sorted(rows, key=lambda r: r["n_atoms"])[:4]:
        frame = frames[row["index"]]
        res = evaluate(model, frame.atoms, stress=True)
        n_atoms = len(frame.atoms)
        e_err = 1e3 * (float(res.energy[0]) - frame.energy) / n_atoms
        f_rmse = 1e3 * float(np.sqrt(((res.forces.double().numpy() - frame.forces) ** 2)
                                     .mean()))
        s_rmse = float(np.sqrt(((res.stress[0].numpy() - frame.stress) ** 2).mean())) / GPA
        assert e_err == pytest.approx(row["energy_error_meV_per_atom"], abs=1e-3)
        assert f_rmse == pytest.approx(row["forces_rmse_meV_per_A"], rel=1e-5)
        assert s_rmse == pytest.approx(row["stress_rmse_GPa"], rel=1e-4, abs=1e-6)


def test_nve_conserves_energy(model):
    """Velocity Verlet for 100 fs from 600 K velocities at dt = 1 and 0.5 fs: the conserved
    energy stays in a narrow band that shrinks about 4x with dt/2 (the integrator's O(dt²)
    error of a conservative force field; a non-conservative or non-smooth one would not
    shrink so)."""
    from hayabusa.md import Simulation, VelocityVerlet, maxwell_boltzmann

    band = {}
    for dt in (1.0, 0.5):
        state = State.from_atoms(cubic_llzo(seed=1), species=model.species)
        maxwell_boltzmann(state, 600.0, seed=0)
        sim = Simulation(state, model, VelocityVerlet(dt), skin=1.0)
        sim.run(0)
        start = float(sim.thermo()["conserved"][0])
        deviations = []
        for _ in range(10):
            sim.run(int(round(10 / dt)))
            deviations.append(float(sim.thermo()["conserved"][0]) - start)
        assert float(sim.thermo()["temp"][0]) > 150  # it moved: the kinetic energy is real
        band[dt] = max(abs(d) for d in deviations) / state.n_atoms
    assert band[1.0] < NVE_BAND_EV_PER_ATOM
    assert band[1.0] / band[0.5] > 2.5
