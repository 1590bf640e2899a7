"""Model export and the model-core seam: the exported file (TorchScript, AOTInductor) loads in
a fresh process without hayabusa and gives the eager model's energies, forces and virial to
1e-10 (float64); it says what it is; an overflowing type section is reported; the core runs
under torch.compile with its custom operators."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from test_deeppot import cuag

from hayabusa import NeighborList, State
from hayabusa.cli import main
from hayabusa.models import DeepPotSE, ModelPotential, save_model
from hayabusa.models.export import ExportedModel, export_model

SMALL = {"embedding": (8, 16, 32), "axis_neurons": 4, "fitting": (16, 16), "neighbor_norm": 20.0}

#: run in a fresh interpreter where importing hayabusa fails: the file must stand alone
LOADER = """
import sys
sys.modules["hayabusa"] = None  # no hayabusa code can be imported
import torch
fmt, model_path, inputs_path, out_path = sys.argv[1:]
inputs = torch.load(inputs_path)
if fmt == "torchscript":
    model = torch.jit.load(model_path)
else:
    model = torch._inductor.aoti_load_package(model_path)
torch.save([tuple(model(*x)) for x in inputs], out_path)
"""


def core(seed=0) -> DeepPotSE:
    torch.manual_seed(seed)
    m = DeepPotSE([29, 47], r_cut=4.0, r_smth=1.0, **SMALL)
    m.set_reference_energies([-3.5, -2.8])
    with torch.no_grad():
        m.dstd[:] = 0.5
    return m.eval()


def inputs_of(m, atoms_list, skin=0.5):
    """The exported module's inputs for a batch, from an ordinary list with a skin (slots
    beyond the cutoff and in no particular type order)."""
    state = State.from_atoms(atoms_list, species=m.species)
    nl = NeighborList(m.cutoff, skin=skin).build(state)
    types = torch.as_tensor([m.species.index(int(z)) for z in state.atomic_numbers])
    return (state.positions, state.cell, types, state.system_idx,
            torch.where(nl.mask, nl.neighbors, -1), nl.shifts), state, nl


def batches():
    return [[cuag(1)], [cuag(2), cuag(3, (2, 2, 3))]]


def run_fresh(tmp_path, fmt, path, inputs):
    torch.save(inputs, tmp_path / "inputs.pt")
    script = tmp_path / "load.py"
    script.write_text(LOADER)
    subprocess.run([sys.executable, str(script), fmt, str(path), str(tmp_path / "inputs.pt"),
                    str(tmp_path / "out.pt")], check=True, capture_output=True, text=True)
    return torch.load(tmp_path / "out.pt")


def test_exported_module_equals_the_potential():
    m = core()
    potential = ModelPotential(m)
    for atoms_list in batches():
        x, state, nl = inputs_of(m, atoms_list)
        energy, atom_energy, forces, virial, overflow = ExportedModel(m, [30, 30])(*x)
        ref = potential(state, nl, compute_stress=True)
        assert torch.allclose(energy, ref.energy, rtol=1e-13, atol=0)
        assert torch.allclose(forces, ref.forces, rtol=0, atol=1e-12)
        stress = -virial / state.volume[:, None, None]
        assert torch.allclose(stress, ref.stress, rtol=0, atol=1e-12)
        assert not bool(overflow)


@pytest.mark.parametrize("fmt", ["torchscript", "aoti"])
def test_exported_file_loads_without_hayabusa_and_equals_eager(fmt, tmp_path):
    m = core(1)
    model_file = save_model(m, tmp_path / "model.pt")
    path = tmp_path / ("model.pt2" if fmt == "aoti" else "model.torchscript.pt")
    assert main(["export", str(model_file), "--format", fmt, "--sel", "30,30",
                 "--output", str(path)]) == 0
    inputs = [inputs_of(m, atoms_list)[0] for atoms_list in batches()]  # other sizes too
    outputs = run_fresh(tmp_path, fmt, path, inputs)
    for x, got in zip(inputs, outputs, strict=True):
        expected = ExportedModel(m, [30, 30])(*x)
        for a, b in zip(expected[:4], got[:4], strict=True):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)
        assert not bool(got[4])
    meta = json.loads(_metadata(fmt, path))
    assert meta["kind"] == "deeppot_se" and meta["species"] == [29, 47]
    assert meta["symbols"] == ["Cu", "Ag"] and meta["sel"] == [30, 30]
    assert meta["cutoff_A"] == 4.0 and meta["units"]["energy"] == "eV"
    assert meta["hyperparameters"] == m.config and meta["format"] == "hayabusa-export-1"
    # refuses to overwrite
    assert main(["export", str(model_file), "--format", fmt, "--sel", "30,30",
                 "--output", str(path)]) == 2


def _metadata(fmt, path) -> str:
    if fmt == "torchscript":
        extra = {"hayabusa.json": ""}
        torch.jit.load(str(path), _extra_files=extra)
        return extra["hayabusa.json"]
    return torch._inductor.aoti_load_package(str(path)).get_metadata()["hayabusa"]


def test_too_narrow_sections_are_reported(tmp_path):
    m = core(2)
    path = export_model(m, tmp_path / "m.pt", "torchscript", sel=[3, 3])
    loaded = torch.jit.load(str(path))
    x = inputs_of(m, batches()[0])[0]
    assert bool(loaded(*x)[4])
    assert not bool(torch.jit.load(str(export_model(m, tmp_path / "w.pt", sel=[30, 30])))(*x)[4])


def test_core_runs_under_torch_compile_with_its_operators():
    """fullgraph: the custom operators (fake kernels, registered backward) trace; the compiled
    model gives the eager energies and forces."""
    m = core(3)
    x, state, nl = inputs_of(m, batches()[1])
    typed = nl.typed(state, m.typed_request)
    args = (state.positions, state.cell, typed.types, state.system_idx, typed.index,
            typed.shifts, list(typed.sel), typed.centers)

    def energy_and_forces(core_model, positions):
        positions = positions.detach().requires_grad_(True)
        e = core_model(positions, *args[1:]).sum()
        return e, torch.autograd.grad(e, positions)[0]

    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    e_ref, f_ref = energy_and_forces(m, state.positions)
    e, f = energy_and_forces(compiled, state.positions)
    assert torch.allclose(e, e_ref, rtol=1e-12) and torch.allclose(f, f_ref, atol=1e-12)
