"""Break an LJ step on the GPU into its parts (CUDA-event timings), to see where time goes.

    python3 bench/profile_lj.py [--atoms 4000,1048576] [--dtype float32]
    python3 bench/profile_lj.py --kalj 256   # Kob–Andersen replicas × 4096 atoms, NHC NVT
"""

from __future__ import annotations

import argparse

import torch

from hayabusa import State
from hayabusa.bench.problems import kob_andersen_replicas, lj_liquid
from hayabusa.md import NoseHooverChain, Simulation, VelocityVerlet, maxwell_boltzmann
from hayabusa.potentials import LennardJones, kob_andersen


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
    parser.add_argument("--kalj", type=int, default=0,
                        help="profile this many Kob–Andersen replicas instead (NHC NVT)")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--kernels", action="store_true",
                        help="also list the GPU kernels of 10 blocks (torch.profiler)")
    args = parser.parse_args()
    print(f"{'atoms':>9} {'build':>9} {'LJ kernel':>10} {'step':>9} {'no forces':>10} "
          f"{'block/step':>11}  (ms)")
    if args.kalj:
        state = State.from_atoms(kob_andersen_replicas(args.kalj), units="lj", device="cuda")
        maxwell_boltzmann(state, 0.64, units="lj", seed=1)
        profile_one(state, kob_andersen(precision=args.dtype),
                    NoseHooverChain(0.005, 0.64, 0.5, units="lj"), args)
    for n in [] if args.kalj else [int(x) for x in args.atoms.split(",")]:
        state = State.from_atoms(lj_liquid(n), units="lj", device="cuda")
        maxwell_boltzmann(state, 0.72, units="lj", seed=1)
        profile_one(state, LennardJones(1.0, 1.0, 2.5, precision=args.dtype),
                    VelocityVerlet(0.005, units="lj"), args)


def profile_one(state, pot, integrator, args) -> None:
    block_steps = args.block_steps
    sim = Simulation(state, pot, integrator, units="lj", skin=0.3, block_steps=block_steps,
                     health_every=10**9)  # the eager steps below break the energy account
    sim.run(max(args.warmup, 2 * block_steps))
    nl = sim.neighbors
    t_block = timed(lambda: sim.run(block_steps), repeats=10) / block_steps
    if args.kernels:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            sim.run(10 * block_steps)
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25,
                                        max_name_column_width=60))
    t_build = timed(lambda: nl.build_async(state))
    t_force = timed(lambda: pot(state, nl))
    t_step = timed(lambda: sim.integrator.step(state, sim.result, lambda s: pot(s, nl)))
    t_bare = timed(lambda: sim.integrator.step(state, sim.result, lambda s: sim.result))
    print(f"{state.n_atoms:>9} {t_build:>9.3f} {t_force:>10.3f} {t_step:>9.3f} {t_bare:>10.3f} "
          f"{t_block:>11.4f}   list {nl.kind}, K={nl.capacity}, {integrator.name}, "
          f"builds {nl.n_builds}")


if __name__ == "__main__":
    main()
