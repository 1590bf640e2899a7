"""Timing MD runs and the device's copy bandwidth; rows for tables and JSON.

Bytes model (per atom-step, documented in docs/benchmarks.md): the padded neighbor matrix is
read once per force call — K int64 indices, K bool mask entries and K×3 float image shifts —
plus the per-atom state: positions read and written, velocities read and written twice (two
half kicks), forces written and read, all in the state's float dtype:
    bytes = K·(8 + 1 + 3·f) + (2·3 + 4·3 + 2·3)·f,   f = bytes per float.
It is a lower bound for the present PyTorch path (which also writes [N, K] temporaries);
achieved bytes/s = bytes × atom-steps/s.
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


def bytes_per_atom_step(capacity: int, float_bytes: int) -> int:
    return capacity * (8 + 1 + 3 * float_bytes) + 24 * float_bytes


def time_md(atoms_list, potential, device, ensemble: str = "nve", steps: int = 200,
            warmup: int = 50, block_steps: int = 20, temperature: float = 1.0,
            timestep: float = 0.005) -> dict:
    """Run ``warmup`` then ``steps`` steps and time the latter (reduced units)."""
    state = State.from_atoms(atoms_list, units="lj", device=device)
    maxwell_boltzmann(state, temperature, units="lj", seed=1)
    integrator = (VelocityVerlet(timestep, units="lj") if ensemble == "nve" else
                  NoseHooverChain(timestep, temperature, 0.5, units="lj"))
    health_every = block_steps * max(1, round(100 / block_steps)) if block_steps else 100
    sim = Simulation(state, potential, integrator, units="lj", skin=0.3,
                     block_steps=block_steps, health_every=health_every)
    sim.run(warmup)
    builds0 = sim.forces.neighbors.n_builds
    h0 = sim.thermo()["conserved"].clone()
    sync(device)
    t0 = time.perf_counter()
    sim.run(steps)
    sync(device)
    seconds = time.perf_counter() - t0
    h1 = sim.thermo()["conserved"]
    n = state.n_atoms
    rate = steps * n / seconds
    capacity = sim.forces.neighbors.capacity
    float_bytes = torch.finfo(state.dtype).bits // 8
    model = bytes_per_atom_step(capacity, float_bytes)
    drift = ((h1 - h0).abs() / state.n_atoms_per_system).max().item()
    return {
        "atoms": n, "systems": state.n_systems, "steps": steps,
        "ms_per_step": 1e3 * seconds / steps, "atom_steps_per_s": rate,
        "tau_per_day": steps * timestep / seconds * 86400,
        "neighbor_capacity": capacity, "builds": sim.forces.neighbors.n_builds - builds0,
        "blocks_undone": sim.blocks.undone if sim.blocks is not None else 0,
        "bytes_per_atom_step": model, "achieved_bytes_per_s": model * rate,
        "energy_drift_per_atom": drift,
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
