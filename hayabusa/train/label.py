"""Reference labels for training: energy (eV), forces (eV/Å) and stress (eV/Å³, 3D-periodic
frames only) from any ASE calculator, written to extxyz that ``load_frames`` reads back exactly.

References (``--reference SPEC``):

- ``emt``: ASE's effective-medium theory (Al, Cu, Ag, Au, Ni, Pd, Pt + H, C, N, O), a test
  potential;
- ``sevennet``: SevenNet-0 (``7net-0``) or another checkpoint bundled in the ``sevenn`` wheel;
- ``chgnet``: CHGNet 0.3.0 (or ``0.2.0``, ``r2scan``) bundled in the ``chgnet`` wheel;
- ``module:Name``: any class or function that returns an ASE calculator, called with
  ``--reference-args`` as keyword arguments. This imports and runs user code with the user's
  permissions: only for code one trusts.

The foundation models are surrogates of DFT, not DFT: every labelled frame says so in
``info["label_reference"]``, with the package and checkpoint in ``info["label_version"]``.
Their weights load from inside the wheels; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import io
import json
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ase
import ase.data
import numpy as np
from ase.calculators.calculator import all_properties

from ..builders import read_images
from ..errors import InputError, first_line
from ..files import check_text_ends, write_atomic

#: built-in reference specs and the --reference-args keys each accepts
BUILTIN_ARGS = {"emt": ("asap_cutoff",), "sevennet": ("model", "modal"), "chgnet": ("model",)}

# checkpoints inside the sevenn wheel: name → (display name, DFT level by head or None)
_SEVENNET_MODELS = {
    "7net-0": ("SevenNet-0 (7net-0, 11Jul2024)", "PBE/PBE+U (Materials Project MPtrj)"),
    "7net-l3i5": ("SevenNet-l3i5 (7net-l3i5)", "PBE/PBE+U (Materials Project MPtrj)"),
    "7net-mf-0": ("SevenNet-MF-0", {"PBE": "PBE/PBE+U", "R2SCAN": "r2SCAN"}),
}
_CHGNET_MODELS = {
    "0.3.0": "PBE/PBE+U (Materials Project MPtrj, MP2020-corrected energies)",
    "0.2.0": "PBE/PBE+U (Materials Project MPtrj, MP2020-corrected energies)",
    "r2scan": "r2SCAN (MP-r2SCAN, fine-tuned from CHGNet 0.3.0)",
}
_SURROGATE = "foundation-model surrogate of {}, not DFT"
# result keys an input frame may carry from an earlier labelling; all are dropped
_OLD_LABELS = set(all_properties) | {"virial"}


@dataclass
class Reference:
    """An ASE calculator with what its labels are."""

    calculator: object  # ASE calculator
    name: str  # short, for messages
    description: str  # stored as info["label_reference"]
    version: str  # stored as info["label_version"]
    species: frozenset[int] | None = None  # atomic numbers it knows; None: not known ahead


def make_reference(spec: str, args: dict | None = None, device: str = "cpu") -> Reference:
    """The reference ``spec`` (emt, sevennet, chgnet or module:Name) built with ``args``.

    ``device`` (a torch device name) is used by sevennet and chgnet only."""
    args = dict(args or {})
    if spec in BUILTIN_ARGS:
        unknown = sorted(set(args) - set(BUILTIN_ARGS[spec]))
        if unknown:
            raise InputError(f"--reference-args: unknown key(s) {unknown} for {spec}; "
                             f"expected some of {list(BUILTIN_ARGS[spec])}")
        return {"emt": _emt, "sevennet": _sevennet, "chgnet": _chgnet}[spec](args, str(device))
    if ":" in spec:
        return _factory(spec, args)
    raise InputError(f"--reference: unknown reference {spec!r}; expected one of "
                     f"{list(BUILTIN_ARGS)} or module:Name (a class or function returning an "
                     f"ASE calculator)")


def _emt(args: dict, device: str) -> Reference:
    from ase.calculators.emt import EMT, parameters

    return Reference(EMT(**args), "ASE EMT",
                     "ASE EMT (effective-medium theory) - semi-empirical test potential, not DFT",
                     f"ase {ase.__version__}",
                     frozenset(ase.data.atomic_numbers[s] for s in parameters))


def _sevennet(args: dict, device: str) -> Reference:
    import sevenn
    import torch
    from sevenn.calculator import SevenNetCalculator
    from sevenn.util import pretrained_name_to_path

    model = args.get("model", "7net-0")
    if model not in _SEVENNET_MODELS:
        raise InputError(f"--reference-args: sevennet model {model!r} is not bundled in the "
                         f"sevenn wheel; expected one of {list(_SEVENNET_MODELS)} (for another "
                         f"checkpoint file use sevenn.calculator:SevenNetCalculator)")
    display, level = _SEVENNET_MODELS[model]
    modal = args.get("modal")
    if isinstance(level, dict):
        if modal not in level:
            raise InputError(f"--reference-args: sevennet model {model} needs modal, one of "
                             f"{list(level)}; got {modal!r}")
        display, level = f"SevenNet-MF-0 ({model}, {modal} head)", level[modal]
    elif modal is not None:
        raise InputError(f"--reference-args: sevennet model {model} has no modal heads; "
                         f"drop modal={modal!r}")
    path = pretrained_name_to_path(model)  # a file inside the wheel: no download
    with warnings.catch_warnings():  # "no tensor product accelerator": CPU inference is exact
        warnings.filterwarnings("ignore", message="No tensor product accelerator")
        calc = SevenNetCalculator(path, device=device, modal=modal)
    written_by = calc.sevennet_config.get("version", "?")
    return Reference(calc, display, f"{display} - {_SURROGATE.format(level)}",
                     f"sevenn {sevenn.__version__} (checkpoint written by sevenn {written_by}, "
                     f"sha256 {_sha256(path)[:16]}), torch {torch.__version__}",
                     frozenset(int(z) for z in calc.type_map))


def _chgnet(args: dict, device: str) -> Reference:
    import chgnet
    import torch
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    model = args.get("model", "0.3.0")
    if model not in _CHGNET_MODELS:
        raise InputError(f"--reference-args: chgnet model {model!r} is not bundled in the "
                         f"chgnet wheel; expected one of {list(_CHGNET_MODELS)}")
    with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its device
        net = CHGNet.load(model_name=model, use_device=device, verbose=False)
        calc = CHGNetCalculator(net, use_device=device)
    display = f"CHGNet {net.version}"
    n_elements = net.atom_embedding.embedding.num_embeddings  # Z = 1 … n_elements
    return Reference(calc, display,
                     f"{display} - {_SURROGATE.format(_CHGNET_MODELS[model])}",
                     f"chgnet {chgnet.__version__} (model {net.version}, "
                     f"{net.n_params} parameters), torch {torch.__version__}",
                     frozenset(range(1, n_elements + 1)))


def _factory(spec: str, args: dict) -> Reference:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"--reference {spec}: cannot import {module_name} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(f"--reference {spec}: {module_name} has no class or function {attr!r}")
    call = f"{spec}({', '.join(f'{k}={v!r}' for k, v in args.items())})"
    try:
        calc = factory(**args)
    except Exception as exc:  # any error of user code means "cannot build this reference"
        raise InputError(f"--reference {call} failed: {first_line(exc)}") from None
    if not callable(getattr(calc, "get_potential_energy", None)):
        raise InputError(f"--reference {spec}: returned {type(calc).__name__}, "
                         f"not an ASE calculator")
    top = module_name.split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top)
    version = (f"{dists[0]} {importlib.metadata.version(dists[0])}" if dists
               else f"{top} (not an installed package)")
    return Reference(calc, spec, f"{call} - ASE calculator given by the user", version)


def label(images: Sequence[ase.Atoms], reference: Reference, source: str = "input",
          progress: bool = False) -> list[ase.Atoms]:
    """Copies of ``images`` labelled by ``reference``: ``info["energy"]`` (eV),
    ``arrays["forces"]`` [n, 3] (eV/Å), ``info["stress"]`` [3, 3] (eV/Å³, ASE sign) for
    3D-periodic frames, plus ``label_reference`` and ``label_version``.

    Earlier labels are dropped. InputError names ``source`` and the frame index of a frame
    the reference cannot label (unknown element, calculator error, non-finite result)."""
    for k, atoms in enumerate(images):
        if len(atoms) == 0:
            raise InputError(f"{source}, frame {k}: no atoms")
        if reference.species is not None:  # checked for all frames before any work
            unknown = sorted(set(atoms.numbers.tolist()) - reference.species)
            if unknown:
                raise InputError(f"{source}, frame {k}: {reference.name} does not know "
                                 f"element(s) {[ase.data.chemical_symbols[z] for z in unknown]}")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(images), unit="frame", dynamic_ncols=True)
    out = []
    try:
        for k, atoms in enumerate(images):
            out.append(_label_one(atoms, reference, f"{source}, frame {k}"))
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    return out


def _label_one(atoms: ase.Atoms, reference: Reference, where: str) -> ase.Atoms:
    work = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                     pbc=atoms.pbc)
    periodic = bool(work.pbc.all()) and work.cell.rank == 3
    try:
        work.calc = reference.calculator
        energy = float(work.get_potential_energy())
        forces = np.array(work.get_forces(), dtype=float)
        stress = np.array(work.get_stress(voigt=False), dtype=float) if periodic else None
    except Exception as exc:  # calculators raise many kinds; all mean "cannot label this"
        raise InputError(f"{where}: {reference.name} cannot label it: {first_line(exc)}") \
            from None
    finally:
        work.calc = None
    values = [np.atleast_1d(energy), forces] + ([stress] if periodic else [])
    if not all(np.isfinite(v).all() for v in values):
        raise InputError(f"{where}: {reference.name} gave a NaN or infinite label")
    out = atoms.copy()  # keeps info and per-atom arrays, not the calculator
    for key in _OLD_LABELS & set(out.info):
        del out.info[key]
    for key in _OLD_LABELS & set(out.arrays):
        del out.arrays[key]
    out.info["energy"] = energy
    if periodic:
        out.info["stress"] = stress
    out.info["label_reference"] = reference.description
    out.info["label_version"] = reference.version
    out.new_array("forces", forces)
    return out


def write_extxyz(path, images: Sequence[ase.Atoms]) -> Path:
    """Write labelled frames as extxyz, atomically, with every float at full precision.

    ASE's writer rounds per-atom columns to 8 decimals; here positions and forces keep all
    17 significant digits so ``load_frames`` reads back the exact numbers. The comment line
    (cell, properties, info) is ASE's own."""
    from ase.io.extxyz import output_column_format

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            for atoms in images:
                arrays = {"symbols": np.array(atoms.get_chemical_symbols()),
                          "positions": atoms.positions}
                arrays.update({k: v for k, v in atoms.arrays.items()
                               if k not in ("numbers", "positions")})
                comment, _, _, _ = output_column_format(atoms, list(arrays), arrays)
                columns = [np.asarray(v).reshape(len(atoms), -1) for v in arrays.values()]
                f.write(f"{len(atoms)}\n{comment}\n")
                for i in range(len(atoms)):
                    f.write(" ".join(_field(x) for c in columns for x in c[i]) + "\n")

    return write_atomic(path, write)


def _field(x) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "T" if x else "F"
    if isinstance(x, (float, np.floating)):
        return repr(float(x))
    return str(x)


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def label_file(input_path, output_path, reference: Reference, overwrite: bool = False,
               progress: bool = False) -> str:
    """Label every frame of ``input_path`` (any ASE-readable file) and write ``output_path``
    (.xyz/.extxyz); returns a one-line summary. Nothing is written when a frame fails."""
    out = Path(output_path)
    if out.suffix not in (".xyz", ".extxyz"):
        raise InputError(f"{out}: output must be extxyz (.xyz or .extxyz)")
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    check_text_ends(input_path)
    images = read_images(input_path, ":", "input file")
    start = time.perf_counter()
    labelled = label(images, reference, str(input_path), progress)
    seconds = time.perf_counter() - start
    write_extxyz(out, labelled)
    n_atoms = sum(len(a) for a in labelled)
    e = np.array([a.info["energy"] / len(a) for a in labelled])
    return (f"hayabusa label: {len(labelled)} frames, {n_atoms} atoms labelled with "
            f"{reference.name} in {seconds:.1f} s ({seconds / len(labelled):.3g} s/frame); "
            f"energy {e.min():.4f} … {e.max():.4f} eV/atom; wrote {out}")


def run_label(args) -> int:
    from ..config import device_option

    device = device_option(args.device)
    try:
        ref_args = json.loads(args.reference_args)
    except json.JSONDecodeError as exc:
        raise InputError(f"--reference-args: not JSON ({exc})") from None
    if not isinstance(ref_args, dict):
        raise InputError(f"--reference-args: expected a JSON object, got {args.reference_args}")
    reference = make_reference(args.reference, ref_args, device)
    print(label_file(args.input, args.output, reference, args.overwrite,
                     progress=sys.stderr.isatty()))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "label", help="label structures with energy, forces and stress from a reference",
        description="Label every frame of IN (any ASE-readable file) with energy, forces and "
                    "stress (3D-periodic frames) from a reference calculator; write OUT "
                    "(extxyz). Foundation models are surrogates of DFT, not DFT; each frame "
                    "records which reference labelled it.")
    p.add_argument("input", metavar="IN", help="structures (any file ASE reads; all frames)")
    p.add_argument("output", metavar="OUT", help="labelled frames (.xyz/.extxyz)")
    p.add_argument("--reference", required=True, metavar="SPEC",
                   help="emt, sevennet (SevenNet-0), chgnet (CHGNet 0.3.0) or module:Name "
                        "(class or function returning an ASE calculator). module:Name "
                        "imports and runs that Python code with your permissions: use only "
                        "code you trust")
    p.add_argument("--reference-args", default="{}", metavar="JSON",
                   help='keyword arguments as a JSON object, e.g. \'{"model": "7net-0"}\'')
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (sevennet, "
                                                    "chgnet)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run_label)
