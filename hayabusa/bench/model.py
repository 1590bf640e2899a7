"""``hayabusa bench model``: DeepPot-SE speed — MD throughput, the model's own forward+backward
time (so the engine overhead of a step shows), training throughput, and deepmd-kit side by
side on the same structure with the same descriptor and network sizes.

The structure is fcc Cu (a = 3.615 Å) rattled by 0.05 Å; the models are randomly initialised
(seeded) — speed does not depend on the weights. deepmd-kit (PyTorch backend) is timed through
``forward_lower`` as LAMMPS drives it: extended (ghost) coordinates and a neighbor list of
``sel`` slots built once outside the timing, so its figure is force evaluation only.
"""

from __future__ import annotations

import time

import ase.build
import numpy as np
import torch

from ..models import ModelPotential, get_kind
from ..state import State
from .timing import health_interval, sync

CU_LATTICE = 3.615  # Å


def copper(n_atoms: int, seed: int = 0):
    """fcc Cu of 4n³ ≈ ``n_atoms`` atoms, rattled by 0.05 Å (seeded)."""
    n = max(2, round((n_atoms / 4) ** (1 / 3)))
    atoms = ase.build.bulk("Cu", "fcc", a=CU_LATTICE, cubic=True).repeat((n, n, n))
    atoms.rattle(0.05, seed=seed)
    return atoms


def model_sizes(args) -> dict:
    return {"r_cut": args.r_cut, "r_smth": 0.5, "embedding": (25, 50, 100), "axis_neurons": 16,
            "fitting": (240, 240, 240)}


def _timed(fn, repeats: int, device) -> float:
    """Seconds per call of ``fn`` (after one untimed call)."""
    fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def deeppot(precision: str, sizes: dict, species=(29,)):
    """A seeded, untrained DeepPot-SE core of ``sizes``, built through the model registry."""
    kind = get_kind("deeppot_se")
    settings = kind.settings(r_cut_A=sizes["r_cut"], r_smth_A=sizes["r_smth"],
                             embedding=list(sizes["embedding"]),
                             axis_neurons=sizes["axis_neurons"],
                             fitting=list(sizes["fitting"]), neighbor_norm=50.0,
                             precision=precision)
    torch.manual_seed(0)
    return kind.build(settings, list(species))


def model_time(potential, state, neighbors, repeats: int, graph: bool) -> float:
    """Seconds per force call of ``potential`` alone on ``neighbors`` (with the type sections
    the MD run sized): replayed as one CUDA graph when ``graph``, as the steps of a block run;
    else eager calls."""
    if not graph:
        return _timed(lambda: potential(state, neighbors), repeats, state.device)
    potential(state, neighbors)  # warm-up outside the graph
    sync(state.device)
    call = torch.cuda.CUDAGraph()
    with torch.cuda.graph(call):
        potential(state, neighbors)
    return _timed(call.replay, repeats, state.device)


def hayabusa_md(atoms, precision: str, device, steps: int, block_steps: int, sizes: dict,
                skin: float) -> dict:
    """MD step time of DeepPot-SE in hayabusa's engine (blocks of ``block_steps`` steps in
    CUDA graphs, or eager steps for 0), and the model's forward+backward time alone on the
    same neighbor list, timed the same way.

    The ``steps`` timed steps run once untimed first, from the same state: that warm-up
    captures the graphs and sizes the per-type sections for this trajectory. The random
    model does not hold the lattice together, so atoms gather more neighbours within r_cut
    as the run goes on; each time one outgrows the sections a block is undone, its graph
    captured again and the block rerun, a cost the warm-up pays once."""
    from ..md import Simulation, VelocityVerlet, maxwell_boltzmann

    model = ModelPotential(deeppot(precision, sizes)).to(device).eval()
    state = State.from_atoms(atoms, device=device)
    maxwell_boltzmann(state, 300.0, "metal", seed=1)
    start_positions, start_velocities = state.positions.clone(), state.velocities.clone()
    sim = Simulation(state, model, VelocityVerlet(1.0, "metal"), "metal", skin=skin,
                     block_steps=block_steps, health_every=health_interval(block_steps))
    sim.run(steps)
    state.positions.copy_(start_positions)  # in place: the captured graphs read these
    state.velocities.copy_(start_velocities)
    sim.result = None
    sim.run(0)  # forces at the start
    blocks = sim.blocks
    undone, resized, replays = (blocks.undone, blocks.resized, blocks.replays) if blocks \
        else (0, 0, 0)
    builds = sim.neighbors.n_builds
    sync(device)
    start = time.perf_counter()
    sim.run(steps)
    sync(device)
    step = (time.perf_counter() - start) / steps
    nl = sim.neighbors
    graph = blocks is not None and blocks.cuda_graph and blocks.replays > replays
    model_s = model_time(model, sim.state, nl, max(5, steps // 4), graph)
    n = len(atoms)
    row = {"engine": "hayabusa", "precision": precision, "atoms": n,
           "ms_per_step": 1e3 * step, "atom_steps_per_s": n / step,
           "model_ms": 1e3 * model_s, "overhead_pct": 100 * (step - model_s) / step,
           "neighbor_list": nl.kind, "neighbor_capacity": nl.capacity,
           "list_builds": nl.n_builds - builds,
           "steps_run_as": "CUDA-graph blocks" if graph else "eager steps"}
    if blocks is not None:
        row["blocks_run"] = blocks.replays - replays
        row["blocks_undone"] = blocks.undone - undone
        row["blocks_resized"] = blocks.resized - resized
    row["section_widths"] = list(nl.section_widths(model.model.typed_request))
    return row


def emt_copper_frames(frames: int = 32, atoms_per_frame: int = 108) -> list:
    """Labelled frames of rattled fcc Cu (EMT energy and forces) for training timings."""
    from ase.calculators.emt import EMT

    from ..train.data import Frame

    data = []
    for k in range(frames):
        atoms = copper(atoms_per_frame, seed=100 + k)
        atoms.calc = EMT()
        data.append(Frame(atoms, atoms.get_potential_energy(), atoms.get_forces(), None,
                          f"emt:{k}"))
    return data


def hayabusa_training(data: list, precision: str, device, steps: int, sizes: dict,
                      batch_atoms: int = 1024) -> dict:
    """Frames per second of DeepPot-SE training (energy + force loss, Adam) on ``data``
    (frames of equal size)."""
    from ..train.trainer import Trainer, TrainSettings

    model = deeppot(precision, sizes)
    trainer = Trainer(model, data, data[:2], TrainSettings(total_steps=steps + 2,
                                                          batch_atoms=batch_atoms), device)
    atoms_per_frame = len(data[0].atoms)
    per_batch = batch_atoms // atoms_per_frame
    seconds = _timed(trainer.train_step, steps, device)
    return {"engine": "hayabusa", "precision": precision, "frames_per_s": per_batch / seconds,
            "atoms_per_frame": atoms_per_frame, "frames_per_batch": per_batch}


def deepmd_version() -> str | None:
    try:
        import importlib.metadata

        import deepmd.pt  # noqa: F401

        return importlib.metadata.version("deepmd-kit")
    except Exception:  # ImportError, or its compiled ops not matching this torch
        return None


def extended_system(positions: torch.Tensor, box: torch.Tensor, r_cut: float):
    """Ghost atoms for an orthorhombic periodic box (as LAMMPS hands them to a pair style):
    every periodic image within ``r_cut`` of the box. Returns extended coordinates [M, 3] (the
    local atoms first) and ``mapping`` [M] (the local atom each one copies)."""
    wrapped = positions - box * torch.floor(positions / box)
    n = wrapped.shape[0]
    coords, mapping = [wrapped], [torch.arange(n, device=wrapped.device)]
    for shift in torch.cartesian_prod(*[torch.tensor([-1.0, 0.0, 1.0])] * 3).tolist():
        if shift == [0.0, 0.0, 0.0]:
            continue
        image = wrapped + box * torch.tensor(shift, dtype=wrapped.dtype, device=wrapped.device)
        keep = ((image > -r_cut) & (image < box + r_cut)).all(dim=1)
        coords.append(image[keep])
        mapping.append(torch.nonzero(keep)[:, 0])
    return torch.cat(coords), torch.cat(mapping)


def nearest_neighbors(local: torch.Tensor, extended: torch.Tensor, sel: int, r_cut: float,
                      chunk: int = 2048) -> torch.Tensor:
    """[n, sel] indices into ``extended`` of each local atom's nearest neighbours within
    ``r_cut`` (itself excluded), −1 padded."""
    rows = []
    for start in range(0, local.shape[0], chunk):
        d = torch.cdist(local[start:start + chunk], extended)
        own = torch.arange(start, min(start + chunk, local.shape[0]), device=local.device)
        d[torch.arange(own.numel(), device=local.device), own] = float("inf")
        dist, idx = torch.topk(d, sel, dim=1, largest=False)
        rows.append(torch.where(dist < r_cut, idx, -1))
    return torch.cat(rows)


def deepmd_md(atoms, precision: str, device, steps: int, sizes: dict, sel: int) -> dict:
    """deepmd-kit's force evaluation time per step through ``forward_lower`` (float64 or
    float32 — deepmd-kit has no mixed mode), forces summed back onto the local atoms."""
    version = deepmd_version()
    if version is None:
        return {"engine": "deepmd-kit", "precision": precision,
                "missing": "deepmd-kit not importable (pip install deepmd-kit==3.2.0 with its "
                           "dependencies, built for this torch)"}
    from deepmd.pt.model.model import get_model

    dp_precision = "float64" if precision == "float64" else "float32"
    params = {"type_map": ["Cu"],
              "descriptor": {"type": "se_e2_a", "sel": [sel], "rcut": sizes["r_cut"],
                             "rcut_smth": sizes["r_smth"], "neuron": list(sizes["embedding"]),
                             "axis_neuron": sizes["axis_neurons"], "precision": dp_precision},
              "fitting_net": {"neuron": list(sizes["fitting"]), "resnet_dt": True,
                              "precision": dp_precision}}
    torch.manual_seed(0)
    model = get_model(params).to(device).eval()
    pos = torch.tensor(atoms.positions, dtype=torch.float64, device=device)
    box = torch.tensor(np.diag(atoms.cell.array), dtype=torch.float64, device=device)
    ext, mapping = extended_system(pos, box, sizes["r_cut"])
    nlist = nearest_neighbors(ext[: len(atoms)], ext, sel, sizes["r_cut"])
    n = len(atoms)
    ext_types = torch.zeros(1, ext.shape[0], dtype=torch.long, device=device)

    def evaluate():
        out = model.forward_lower(ext[None], ext_types, nlist[None], mapping[None])
        forces = torch.zeros(n, 3, dtype=torch.float64, device=device)
        return forces.index_add_(0, mapping, out["extended_force"][0].to(torch.float64))

    seconds = _timed(evaluate, steps, device)
    return {"engine": f"deepmd-kit {version}", "precision": dp_precision, "atoms": n,
            "ms_per_step": 1e3 * seconds, "atom_steps_per_s": n / seconds,
            "model_ms": 1e3 * seconds, "neighbor_capacity": sel,
            "note": "force evaluation only (neighbor list and ghosts built once, untimed)"}


MD_COLUMNS = [
    ("engine", "engine", "s"), ("precision", "precision", "s"), ("atoms", "atoms", "d"),
    ("ms/step", "ms_per_step", ".3f"), ("atom-steps/s", "atom_steps_per_s", ".3e"),
    ("model ms", "model_ms", ".3f"), ("overhead %", "overhead_pct", ".1f"),
    ("vs deepmd", "speedup", ".2f"),
]
TRAIN_COLUMNS = [("engine", "engine", "s"), ("precision", "precision", "s"),
                 ("frames/s", "frames_per_s", ".1f"), ("atoms/frame", "atoms_per_frame", "d")]


def run_model_bench(args, device, env) -> dict:
    """Rows for every size × precision; prints the tables; returns the JSON report."""
    from .timing import format_table

    sizes = model_sizes(args)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    md_rows, train_rows = [], []
    for n in args.sizes:
        atoms = copper(n)
        reference = {}
        for precision in precisions:
            ours = hayabusa_md(atoms, precision, device, args.steps, args.block_steps, sizes,
                               args.skin)
            dp_precision = "float64" if precision == "float64" else "float32"
            if args.with_deepmd and dp_precision not in reference:
                reference[dp_precision] = deepmd_md(atoms, precision, device, args.steps,
                                                    sizes, args.sel)
                md_rows.append(reference[dp_precision])
            peer = reference.get(dp_precision, {})
            if "atom_steps_per_s" in peer:
                ours["speedup"] = ours["atom_steps_per_s"] / peer["atom_steps_per_s"]
            md_rows.append(ours)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    data = emt_copper_frames()  # labelled once, trained on in every precision
    for precision in precisions:
        train_rows.append(hayabusa_training(data, precision, device, args.train_steps, sizes))
    print(f"\nDeepPot-SE se_e2_a, fcc Cu, r_cut {sizes['r_cut']} Å, embedding "
          f"{list(sizes['embedding'])}, axis {sizes['axis_neurons']}, fitting "
          f"{list(sizes['fitting'])}; NVE 1 fs, skin {args.skin} Å")
    print(f"device {env['device']}, torch {env['torch']}, commit {env['commit']}, {env['date']}")
    ours = [r for r in md_rows if r["engine"] == "hayabusa"]
    if ours:
        print(f"hayabusa: {ours[0]['steps_run_as']} (block steps {args.block_steps}); model ms "
              "= the model's call alone, run the same way; deepmd-kit: eager forward_lower")
    print(format_table([r for r in md_rows if "missing" not in r], MD_COLUMNS))
    for r in ours:
        if "blocks_run" in r:
            print(f"hayabusa {r['precision']}: in the timed steps {r['blocks_run']} blocks, "
                  f"{r['blocks_undone']} undone ({r['blocks_resized']} outgrew the sections), "
                  f"{r['list_builds']} list builds; sections of {r['section_widths']} slots, "
                  f"list capacity {r['neighbor_capacity']}")
    for r in md_rows:
        if "missing" in r:
            print(f"peer {r['engine']}: not run — {r['missing']}")
    print("\ntraining (energy + force loss, Adam), EMT-labelled Cu frames:")
    print(format_table(train_rows, TRAIN_COLUMNS))
    return {"md": md_rows, "training": train_rows,
            "model": {k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()}}
