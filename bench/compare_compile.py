"""LJ forces on the GPU three ways, same state and min-image list: the PyTorch path eager, the
same path under torch.compile, and the hand-written Triton kernel (triton_pair).

    python3 bench/compare_compile.py [--atoms 32000,1048576] [--dtype float32]

Prints ms per force call (CUDA events, mean of 20 after warm-up) and the largest force
difference to the Triton kernel relative to the largest force.
"""

from __future__ import annotations

import argparse
import time

import torch
from profile_lj import timed  # the same CUDA-event timer (bench/ is on sys.path)

from hayabusa import State
from hayabusa.bench.problems import lj_liquid
from hayabusa.neighbors.min_image import MinImageNeighborList
from hayabusa.potentials import LennardJones
from hayabusa.potentials.pair import PairPotential


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--atoms", default="32000,1048576")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    print(f"{'atoms':>9} {'eager ms':>9} {'compiled ms':>12} {'Triton ms':>10} "
          f"{'compile s':>10} {'max |ΔF|/max|F|':>17}")
    for n in [int(x) for x in args.atoms.split(",")]:
        compare(n, args.dtype)
        torch.cuda.empty_cache()


def compare(n: int, dtype: str) -> None:
    state = State.from_atoms(lj_liquid(n), units="lj", device="cuda")
    state.positions.add_(0.05 * torch.randn_like(state.positions))
    nl = MinImageNeighborList(2.5, 0.3).build(state)
    pot = LennardJones(1.0, 1.0, 2.5, "shift", precision=dtype).to("cuda")

    def eager():
        return PairPotential.forward(pot, state, nl).forces

    compiled = torch.compile(eager)
    t0 = time.perf_counter()
    compiled()
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0
    ref = pot(state, nl).forces  # Triton kernel
    diff = float((compiled() - ref).abs().max() / ref.abs().max())
    print(f"{n:>9} {timed(eager):>9.3f} {timed(compiled):>12.3f} "
          f"{timed(lambda: pot(state, nl)):>10.3f} {compile_s:>10.1f} {diff:>17.1e}")


if __name__ == "__main__":
    main()
