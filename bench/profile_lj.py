"""Break an LJ step on the GPU into its parts (CUDA-event timings), to see where time goes.

    python3 bench/profile_lj.py [--atoms 4000,1048576] [--dtype float32]
"""

from __future__ import annotations

import argparse

import torch

from hayabusa import State
from hayabusa.bench.problems import lj_liquid
from hayabusa.md import Simulation, VelocityVerlet, maxwell_boltzmann
from hayabusa.potentials import LennardJones


def timed(fn, repeats: int = 20) -> float:
    """Mean milliseconds of ``fn()`` over ``repeats`` calls (after one warm-up call)."""
    fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--atoms", default="4000,1048576")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--block-steps", type=int, default=10)
    args = parser.parse_args()
    print(f"{'atoms':>9} {'build':>9} {'LJ kernel':>10} {'VV step':>9} {'block/step':>11}  (ms)")
    for n in [int(x) for x in args.atoms.split(",")]:
        profile_one(n, args.dtype, args.block_steps)


def profile_one(n: int, dtype: str, block_steps: int) -> None:
    state = State.from_atoms(lj_liquid(n), units="lj", device="cuda")
    maxwell_boltzmann(state, 0.72, units="lj", seed=1)
    pot = LennardJones(1.0, 1.0, 2.5, precision=dtype)
    sim = Simulation(state, pot, VelocityVerlet(0.005, units="lj"), units="lj", skin=0.3,
                     block_steps=block_steps, health_every=100 * block_steps)
    sim.run(2 * block_steps)
    nl = sim.forces.neighbors
    t_build = timed(lambda: nl.build_async(state))
    t_force = timed(lambda: pot(state, nl))
    t_step = timed(lambda: sim.integrator.step(state, sim.result, lambda s: pot(s, nl)))
    t_block = timed(lambda: sim.run(block_steps), repeats=10) / block_steps
    print(f"{state.n_atoms:>9} {t_build:>9.3f} {t_force:>10.3f} {t_step:>9.3f} "
          f"{t_block:>11.4f}   list {nl.kind}, K={nl.capacity}")

if __name__ == "__main__":
    main()
