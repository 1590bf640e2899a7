"""``hayabusa export``: a model core as a self-describing file that other engines load
without hayabusa — TorchScript (``torch.jit.load``) or an AOTInductor package
(``torch._inductor.aoti_load_package``).

The exported module takes a batch in tensors and a full neighbour list in any order:

    positions [N, 3] (Å), cell [S, 3, 3] (rows, Å), atom_types [N] int64 (the model's type
    order, ``species`` in the metadata), system_idx [N] int64, neighbors [N, K] int64 (atom
    ids, −1 where empty), shifts [N, K, 3] (image shifts in cell rows: r_j + shift·cell − r_i)

and returns (energy [S] eV float64, atom_energy [N] eV, forces [N, 3] eV/Å, virial [S, 3, 3]
eV (−∂E/∂ε), overflow [] bool). It groups the neighbours within the cutoff by type into the
fixed sections ``sel`` written in the metadata (DeePMD's ``sel``); ``overflow`` is true when an
atom had more neighbours of a type than its section holds (those beyond it were left out:
evaluate again with a model exported with a larger ``--sel``). The model runs its PyTorch
reference path (no hayabusa custom operators, which a file without hayabusa cannot carry);
the AOTInductor compiler fuses that path itself. The metadata (JSON: format, kind,
hyperparameters, species, cutoff, sel, units, precision, dtype, device, training-data hash,
hayabusa version) is stored in the TorchScript file as the extra file ``hayabusa.json`` and in
the AOTInductor package as its metadata key ``hayabusa``.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import ase.data
import torch
from torch import nn

from ..errors import InputError
from ..neighbors.typed import group_by_type
from ..neighbors.verlet import gather_rows

EXPORT_FORMAT = "hayabusa-export-1"
FORMATS = ("torchscript", "aoti")


class ExportedModel(nn.Module):
    """A model core with forces and virial by autograd, on any full neighbour list (see the
    module docstring)."""

    def __init__(self, core: nn.Module, sel: list[int]):
        super().__init__()
        self.core = copy.deepcopy(core).eval()
        self.core.kernels = False  # the PyTorch references: no custom operators in the file
        self.sel = [int(w) for w in sel]
        self.cutoff = float(core.cutoff)
        self.n_types = len(core.species)

    def forward(self, positions: torch.Tensor, cell: torch.Tensor, atom_types: torch.Tensor,
                system_idx: torch.Tensor, neighbors: torch.Tensor, shifts: torch.Tensor):
        n_systems = cell.shape[0]
        mask = neighbors >= 0
        index = neighbors.clamp(min=0)
        with torch.no_grad():
            vec = gather_rows(positions, index) - positions[:, None, :] + torch.einsum(
                "nki,nij->nkj", shifts.to(positions.dtype), cell[system_idx])
            within = mask & ((vec * vec).sum(-1) < self.cutoff * self.cutoff)
            typed, typed_shifts, counts = group_by_type(neighbors, shifts, within,
                                                        atom_types[index], self.sel)
            limit = torch.tensor(self.sel, dtype=counts.dtype, device=counts.device)
            overflow = (counts > limit).any()
        centers = [torch.nonzero(atom_types == t).flatten() for t in range(self.n_types)]
        positions = positions.detach().requires_grad_(True)
        strain = torch.zeros(n_systems, 3, 3, dtype=positions.dtype,
                             device=positions.device).requires_grad_(True)
        deform = torch.eye(3, dtype=positions.dtype, device=positions.device) + strain
        pos = torch.einsum("ni,nij->nj", positions, deform[system_idx])
        deformed_cell = torch.einsum("sij,sjk->sik", cell, deform)
        atom_energy = self.core(pos, deformed_cell, atom_types, system_idx, typed, typed_shifts,
                                self.sel, centers)
        energy = torch.zeros(n_systems, dtype=torch.float64, device=positions.device)
        energy = energy.index_add(0, system_idx, atom_energy)
        grads = torch.autograd.grad([energy.sum()], [positions, strain])
        forces, virial = grads[0], grads[1]
        assert forces is not None and virial is not None
        return energy.detach(), atom_energy.detach(), -forces, -virial, overflow


def metadata(core: nn.Module, sel: list[int], dtype: torch.dtype, device: str,
             fmt: str) -> dict:
    """What the exported file says about itself."""
    from .. import __version__

    meta = getattr(core, "metadata", {}) or {}
    return {"format": EXPORT_FORMAT, "exported_as": fmt, "kind": core.kind,
            "hyperparameters": core.config, "species": list(core.species),
            "symbols": [ase.data.chemical_symbols[z] for z in core.species],
            "cutoff_A": float(core.cutoff), "sel": list(sel),
            "units": {"length": "Å", "energy": "eV", "forces": "eV/Å", "virial": "eV"},
            "precision": getattr(core, "precision", "float64"),
            "dtype": str(dtype).removeprefix("torch."), "device": device,
            "training_data_sha256": meta.get("dataset_sha256"),
            "hayabusa_version": __version__,
            "inputs": ["positions", "cell", "atom_types", "system_idx", "neighbors", "shifts"],
            "outputs": ["energy", "atom_energy", "forces", "virial", "overflow"]}


def example_inputs(core: nn.Module, sel: list[int], dtype, device) -> tuple:
    """A small periodic batch (two systems, every species) to trace with."""
    from ..neighbors import NeighborList
    from ..state import State

    rng = torch.Generator().manual_seed(0)
    n = max(4, 2 * len(core.species))
    box = 2.2 * core.cutoff
    systems = []
    for _ in range(2):
        numbers = [core.species[i % len(core.species)] for i in range(n)]
        atoms = ase.Atoms(numbers=numbers, cell=[box] * 3, pbc=True,
                          positions=(torch.rand(n, 3, generator=rng) * box).numpy())
        systems.append(atoms)
    state = State.from_atoms(systems, species=core.species, dtype=dtype)
    nl = NeighborList(core.cutoff).build(state)
    neighbors = torch.where(nl.mask, nl.neighbors, -1)
    types = torch.as_tensor([core.species.index(int(z)) for z in state.atomic_numbers])
    return tuple(t.to(device) for t in (state.positions, state.cell, types, state.system_idx,
                                        neighbors, nl.shifts))


def default_sel(core: nn.Module) -> list[int] | None:
    """Type sections 25 % wider than the most neighbours of each type an atom of the training
    data had (``max_neighbors``), rounded up to even; None if the model does not know."""
    most = getattr(core, "max_neighbors", None)
    if most is None or not bool((most > 0).any()):
        return None
    return [2 * math.ceil(0.625 * int(m)) for m in most]


def export_model(core: nn.Module, path, fmt: str = "torchscript", sel: list[int] | None = None,
                 device: str = "cpu", dtype: torch.dtype = torch.float64) -> Path:
    """Write ``core`` to ``path`` in format ``fmt`` ("torchscript" or "aoti") with type
    sections ``sel`` (default: ``default_sel``)."""
    if fmt not in FORMATS:
        raise InputError(f"export: format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if sel is None:
        sel = default_sel(core)
    if sel is None or len(sel) != len(core.species) or min(sel) < 0:
        raise InputError(f"export: give --sel with {len(core.species)} neighbour counts (one "
                         f"per species: room for that many neighbours of it within the cutoff "
                         f"of an atom) or --structure FILE to size them from a structure")
    path = Path(path)
    module = ExportedModel(core, list(sel)).to(device=device)
    module.core.to(device)
    meta = metadata(core, list(sel), dtype, device, fmt)
    text = json.dumps(meta, indent=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "torchscript":
        scripted = torch.jit.script(module)
        torch.jit.save(scripted, str(path), _extra_files={"hayabusa.json": text})
        return path
    from torch.export import Dim, export
    from torch.fx.experimental.proxy_tensor import make_fx

    inputs = example_inputs(core, list(sel), dtype, device)
    traced = make_fx(module, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*inputs)
    atoms = Dim("atoms", min=2, max=1 << 30)
    slots = Dim("slots", min=1, max=1 << 16)
    systems = Dim("systems", min=1, max=1 << 20)
    shapes = ({0: atoms}, {0: systems}, {0: atoms}, {0: atoms}, {0: atoms, 1: slots},
              {0: atoms, 1: slots})
    program = export(traced, inputs, dynamic_shapes=shapes, strict=False)
    torch._inductor.aoti_compile_and_package(
        program, package_path=str(path), inductor_configs={"aot_inductor.metadata":
                                                           {"hayabusa": text}})
    return path
