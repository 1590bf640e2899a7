"""Break a DeepPot-SE force call on the GPU into its parts, to see where time goes.

    python3 bench/profile_model.py [--atoms 10976] [--precisions float64,mixed] [--kernels]

Times (mean of 10 calls after one; CUDA events for the eager calls, wall time between syncs
for the graph replays): the environment matrix alone, the atom energies (forward), and
energy + forces (forward + backward) of the ``hayabusa bench model`` network on rattled fcc
Cu, eager and replayed as one CUDA graph (as in MD blocks); ``--kernels``
lists the GPU kernels of 3 force calls; ``--tile-shapes`` times the tangent embedding kernel
in several tile shapes (with their registers and spills) on 80 slots per atom.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_lj import timed  # noqa: E402

from hayabusa import State  # noqa: E402
from hayabusa.bench.model import copper, deeppot, model_time  # noqa: E402
from hayabusa.md.forces import make_neighbor_list  # noqa: E402
from hayabusa.models import ModelPotential  # noqa: E402

SIZES = {"r_cut": 6.0, "r_smth": 0.5, "embedding": (25, 50, 100), "axis_neurons": 16,
         "fitting": (240, 240, 240)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--atoms", type=int, default=10976)
    parser.add_argument("--precisions", default="float64,mixed")
    parser.add_argument("--kernels", action="store_true")
    parser.add_argument("--tile-shapes", action="store_true")
    args = parser.parse_args()
    if args.tile_shapes:
        for precision in args.precisions.split(","):
            tile_shapes(precision, args.atoms * 80)
    atoms = copper(args.atoms)
    print(f"{'precision':>9} {'atoms':>7} {'env':>8} {'energy':>8} {'E+F':>8} "
          f"{'E+F graph':>9}  (ms)")
    for precision in args.precisions.split(","):
        profile(precision, atoms, args.kernels)


def profile(precision: str, atoms, kernels: bool) -> None:
    """Print the environment, energy and energy + forces times of one precision mode."""
    core = deeppot(precision, SIZES).cuda().eval()
    model = ModelPotential(core)
    state = State.from_atoms(atoms, device="cuda")
    nl = make_neighbor_list(model, 1.0, "auto", state)  # as ``bench model`` (skin 1 Å)
    nl.build(state)
    typed = nl.typed(state, core.typed_request)
    args = (state.positions, state.cell, typed.types, state.system_idx, typed.index,
            typed.shifts)

    def energy():
        positions = state.positions.detach().requires_grad_(True)
        return core(positions, *args[1:], list(typed.sel), typed.centers)

    t_env = timed(lambda: core.environment(*args, True), 10)
    t_energy = timed(energy, 10)
    t_full = timed(lambda: model(state, nl), 10)
    widths = typed.sel
    t_graph = 1e3 * model_time(model, state, nl, 10, graph=True)
    print(f"{precision:>9} {len(atoms):>7} {t_env:>8.3f} {t_energy:>8.3f} {t_full:>8.3f} "
          f"{t_graph:>9.3f}   list {nl.kind}, K={nl.capacity}, graph sections {widths}")
    if kernels:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                model(state, nl)
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30,
                                        max_name_column_width=70))


# (BM, BN, warps, pipeline stages: 0 = unrolled loop) tried per dtype, the shape of
# ``tangent_embedding.SHAPES`` first
TILE_SHAPES = {torch.float64: ((16, 64, 2, 2), (32, 32, 2, 0), (32, 32, 2, 2), (16, 64, 2, 0),
                               (32, 64, 4, 2), (16, 128, 4, 2), (32, 128, 8, 2)),
               torch.float32: ((32, 64, 4, 0), (64, 64, 8, 0), (64, 64, 8, 2), (64, 128, 8, 2),
                               (32, 128, 4, 2))}


def tile_shapes(precision: str, rows: int) -> None:
    """Time the tangent embedding kernel's launches in several tile shapes on ``rows``
    slots."""
    import triton

    from hayabusa.models.tangent_embedding import doubling_layer_kernel as kernel

    model = deeppot(precision, SIZES).cuda().eval()
    weights, biases = model.embedding_nets[0].weights()
    w1, b1 = weights[0][:, 0].contiguous(), biases[0].contiguous()
    x = dx = torch.rand(rows, dtype=model.net_dtype, device="cuda")
    for layer, (w, b) in enumerate(zip(weights[1:], biases[1:], strict=True)):
        w, b = w.T.contiguous(), b.contiguous()
        k = w.shape[0]
        y = torch.empty(rows, 2 * k, dtype=x.dtype, device="cuda")
        dy = torch.empty_like(y)
        for bm, bn, warps, stages in TILE_SHAPES[model.net_dtype]:
            launch = functools.partial(
                kernel[(triton.cdiv(rows, bm) * triton.cdiv(2 * k, bn),)],
                x, dx, w1, b1, w, b, y, dy, rows, K=k,
                KP=max(16, triton.next_power_of_2(k)), FROM_S=layer == 0, BM=bm, BN=bn, BK=16,
                STAGES=stages, num_warps=warps)

            compiled = launch()
            ms = timed(launch, 10)
            print(f"tangent layer {layer + 2} {precision:>8} rows {rows} BM {bm} BN {bn} "
                  f"warps {warps} stages {stages}: {ms:.3f} ms, {compiled.n_regs} registers, "
                  f"{compiled.n_spills} spills")
        x, dx = y, dy


if __name__ == "__main__":
    main()
