"""``hayabusa export MODEL --format torchscript|aoti``: a model file as a file other engines
load without hayabusa (see ``models.export``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError
from .export import FORMATS, export_model
from .files import load_core

SUFFIX = {"torchscript": ".torchscript.pt", "aoti": ".pt2"}


def sel_from_structure(core, path) -> list[int]:
    """Type sections sized from the structure in ``path`` (its most neighbours of each type
    within the cutoff, with the neighbor list's margin)."""
    from ..builders import read_structure
    from ..neighbors import NeighborList
    from ..state import State

    atoms = read_structure(path)
    state = State.from_atoms(atoms, species=core.species)
    neighbors = NeighborList(core.cutoff).build(state)
    return list(neighbors.typed(state, core.typed_request).sel)


def _sel(text: str, n_types: int) -> list[int]:
    try:
        sel = [int(x) for x in text.split(",")]
    except ValueError:
        raise InputError(f"--sel: expected {n_types} comma-separated integers, got {text!r}") \
            from None
    if len(sel) != n_types or min(sel) < 0:
        raise InputError(f"--sel: expected {n_types} integers >= 0 (one per species), got "
                         f"{text!r}")
    return sel


def _cmd_export(args) -> int:
    from ..config import device_option

    core = load_core(args.model)
    if args.sel is not None and args.structure is not None:
        raise InputError("give --sel or --structure, not both")
    sel = _sel(args.sel, len(core.species)) if args.sel is not None else (
        sel_from_structure(core, args.structure) if args.structure is not None else None)
    device = device_option(args.device)
    out = Path(args.output) if args.output else \
        Path(args.model).with_suffix("").with_name(Path(args.model).stem + SUFFIX[args.format])
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    export_model(core, out, args.format, sel, str(device), dtype)
    print(f"hayabusa export: wrote {out} ({args.format}, {device}, {args.dtype} positions)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a model for other engines (TorchScript, AOTI)",
                       description="Write a model file as a TorchScript file or an AOTInductor "
                                   "package that loads without hayabusa; it takes positions, "
                                   "cell, types and a full neighbour list and returns energies, "
                                   "forces and the virial (metadata: species, cutoff, units, "
                                   "type sections).")
    p.add_argument("model", metavar="MODEL", help="model file (hayabusa train's model.pt)")
    p.add_argument("--format", choices=FORMATS, default="torchscript")
    p.add_argument("--output", "-o", metavar="PATH",
                   help="output file (default: MODEL's name with .torchscript.pt or .pt2)")
    p.add_argument("--device", default="cpu", help="device to export for (cpu, cuda, cuda:N)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="dtype of the positions the exported model takes")
    p.add_argument("--sel", metavar="N1,N2,…",
                   help="type sections: room for so many neighbours of each species (default: "
                        "from the training data, 25 %% above its most)")
    p.add_argument("--structure", metavar="FILE",
                   help="size the type sections from this structure instead")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_export)
