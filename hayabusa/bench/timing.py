"""Timing MD runs and the device's copy bandwidth; rows for tables and JSON.

Bytes model (per atom-step, documented in docs/benchmarks.md): the neighbor matrix is read
once per force call, plus ten 3-vectors of per-atom state in float64 (positions read by the
force kernel and read + written by the drift, velocities read + written by two half kicks,
forces written by the force call and read by two kicks):
    min_image list (fused kernels):  bytes = 4·K + 10·24        (int32 indices)
    matrix list (PyTorch path):      bytes = K·(8 + 1 + 24) + 10·24   (int64 index, mask, shift)
K is the list's capacity; neighbour gathers are assumed to hit cache and list builds are left
out, so this is a lower bound on the traffic. Achieved bytes/s = bytes × atom-steps/s.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import time

import torch

from ..md import NoseHooverChain, Simulation, VelocityVerlet, maxwell_boltzmann
from ..state import State


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth(device, n_bytes: int = 1 << 30, repeats: int = 10) -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write counted); CPU: memcpy."""
    src = torch.empty(n_bytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    sync(device)
    return 2 * n_bytes * repeats / (time.perf_counter() - t0)


def bytes_per_atom_step(capacity: int, list_kind: str) -> int:
    per_slot = 4 if list_kind == "min_image" else 8 + 1 + 24
    return capacity * per_slot + 10 * 24


def health_interval(block_steps: int) -> int:
    """Health checks about every 100 steps, at block ends (a check between blocks would cut
    them into eager steps)."""
    return block_steps * max(1, round(100 / block_steps)) if block_steps else 100


def time_md(atoms_list, potential, device, ensemble: str = "nve", steps: int = 200,
            warmup: int = 50, block_steps: int = 20, temperature: float = 1.0,
            timestep: float = 0.005) -> dict:
    """Run ``warmup`` then ``steps`` steps and time the latter (reduced units)."""
    state = State.from_atoms(atoms_list, units="lj", device=device)
    maxwell_boltzmann(state, temperature, units="lj", seed=1)
    integrator = (VelocityVerlet(timestep, units="lj") if ensemble == "nve" else
                  NoseHooverChain(timestep, temperature, 0.5, units="lj"))
    sim = Simulation(state, potential, integrator, units="lj", skin=0.3,
                     block_steps=block_steps, health_every=health_interval(block_steps))
    sim.run(warmup)
    builds0 = sim.neighbors.n_builds
    undone0 = sim.blocks.undone if sim.blocks is not None else 0
    h0 = sim.thermo()["conserved"].clone()
    sync(device)
    t0 = time.perf_counter()
    sim.run(steps)
    sync(device)
    seconds = time.perf_counter() - t0
    thermo = sim.thermo()
    h1 = thermo["conserved"]
    n = state.n_atoms
    rate = steps * n / seconds
    capacity = sim.neighbors.capacity
    model = bytes_per_atom_step(capacity, sim.neighbors.kind)
    drift = ((h1 - h0).abs() / state.n_atoms_per_system).max().item()
    return {
        "atoms": n, "systems": state.n_systems, "steps": steps,
        "ms_per_step": 1e3 * seconds / steps, "atom_steps_per_s": rate,
        "tau_per_day": steps * timestep / seconds * 86400,
        "neighbor_list": sim.neighbors.kind,
        "neighbor_capacity": capacity, "builds": sim.neighbors.n_builds - builds0,
        "blocks_undone": (sim.blocks.undone - undone0) if sim.blocks is not None else 0,
        "bytes_per_atom_step": model, "achieved_bytes_per_s": model * rate,
        "energy_drift_per_atom": drift,
        "temperature_end": thermo["temp"].mean().item(),  # mean over systems, after the run
    }


def environment(device) -> dict:
    name = torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else "cpu"
    commit = os.environ.get("HAYABUSA_COMMIT")  # set where the tree travels without .git
    if not commit:
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], text=True,
                                    capture_output=True, check=False).stdout.strip()
        except OSError:
            commit = ""
    commit = commit or "unknown"
    return {"device": name, "torch": torch.__version__, "commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Fixed-width table; ``columns`` are (header, key, format)."""
    header = "  ".join(f"{h:>14}" for h, _, _ in columns)
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            value = row.get(key)
            cells.append(f"{value:{fmt}}" if isinstance(value, (int, float)) else str(value))
        lines.append("  ".join(f"{c:>14}" for c in cells))
    return "\n".join(lines)
