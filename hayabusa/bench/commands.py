"""``hayabusa bench lj`` and ``hayabusa bench kalj``: time MD, print a table, write JSON."""

from __future__ import annotations

import json
import math

import torch

from ..config import device_option
from ..errors import InputError
from ..files import write_atomic
from ..potentials import LennardJones, kob_andersen
from ..potentials.base import PRECISIONS
from .peers import torchsim_md
from .problems import kob_andersen_replicas, lj_liquid
from .timing import copy_bandwidth, environment, format_table, time_md

ENGINE_COLUMNS = [
    ("atoms", "atoms", "d"), ("systems", "systems", "d"), ("ms/step", "ms_per_step", ".4f"),
    ("atom-steps/s", "atom_steps_per_s", ".3e"), ("tau/day", "tau_per_day", ".4g"),
    ("K", "neighbor_capacity", "d"), ("builds", "builds", "d"), ("undone", "blocks_undone", "d"),
    ("T end", "temperature_end", ".3f"),
    ("GB/s (model)", "achieved_gb_per_s", ".1f"), ("|ΔH|/N", "energy_drift_per_atom", ".2e"),
]


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--atoms: expected comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise InputError(f"--atoms: expected positive integers, got {text!r}")
    return sizes


PEER_COLUMNS = [
    ("peer", "peer", "s"), ("atoms", "atoms", "d"), ("systems", "systems", "d"),
    ("ms/step", "ms_per_step", ".4f"), ("atom-steps/s", "atom_steps_per_s", ".3e"),
    ("hayabusa / peer", "speedup", ".1f"),
]
PEERS = {"torchsim": torchsim_md}


#: the smallest value each integer option takes
LEAST = {"steps": 1, "warmup": 0, "block_steps": 0, "replicas": 1, "atoms_per_replica": 2,
         "peer_steps": 1, "peer_warmup": 0, "sel": 1, "train_steps": 1}


def _check_options(args) -> None:
    """InputError naming the first option out of range (counts, lengths, precisions)."""
    if args.atoms is not None:
        _sizes(args.atoms)
    for name, least in LEAST.items():
        value = getattr(args, name)
        if value is not None and value < least:
            raise InputError(f"--{name.replace('_', '-')}: must be >= {least}, got {value}")
    if not (math.isfinite(args.r_cut) and args.r_cut > 0):
        raise InputError(f"--r-cut: must be a finite number > 0, got {args.r_cut}")
    if not (math.isfinite(args.skin) and args.skin >= 0):
        raise InputError(f"--skin: must be a finite number >= 0, got {args.skin}")
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not precisions or any(p not in PRECISIONS for p in precisions):
        raise InputError(f"--precisions: expected some of {', '.join(PRECISIONS)}, got "
                         f"{args.precisions!r}")


def _peers(text: str | None, known) -> list[str]:
    names = [x.strip().lower() for x in (text or "").split(",") if x.strip()]
    unknown = [x for x in names if x not in known]
    if unknown:
        raise InputError(f"--peers: unknown peer {unknown[0]!r}; expected one of "
                         f"{', '.join(known)}")
    return names


def _time_peers(names, atoms_list, ours: dict, device, ensemble, args, temperature) -> list:
    """Each peer on the same systems; the row gets hayabusa's rate divided by the peer's."""
    dtype = torch.float32 if args.dtype == "float32" else torch.float64
    rows = []
    for name in names:
        try:
            row = PEERS[name](atoms_list, device, ensemble, args.peer_steps, args.peer_warmup,
                              temperature, dtype)
        except torch.OutOfMemoryError:
            row = {"peer": name, "missing": "out of GPU memory"}
        if "missing" not in row:
            row["speedup"] = ours["atom_steps_per_s"] / row["atom_steps_per_s"]
        rows.append(row)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def _write_json(path, report: dict) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(report, indent=2)))


def run_bench(args) -> int:
    _check_options(args)
    device = device_option(args.device)
    env = environment(device)
    size = 1 << 30 if device.type == "cuda" else 1 << 26
    env["copy_bandwidth_GB_per_s"] = copy_bandwidth(device, size) / 1e9
    if args.problem == "model":
        from .model import run_model_bench

        args.sizes = _sizes(args.atoms or "10976")
        args.with_deepmd = "deepmd" in _peers(args.peers, ["deepmd"])
        report = {"problem": "model", "environment": env,
                  "settings": {"steps": args.steps, "warmup": "the timed steps, run once before "
                               "from the same state", "block_steps": args.block_steps,
                               "precisions": args.precisions, "sel": args.sel},
                  **run_model_bench(args, device, env)}
        if args.json:
            _write_json(args.json, report)
        return 0
    peers = _peers(args.peers, PEERS)
    if args.warmup is None:
        args.warmup = 1000 if args.problem == "kalj" else 50
    rows, peer_rows = [], []
    if args.problem == "lj":
        for n in _sizes(args.atoms or "4000,32000"):
            atoms = lj_liquid(n)
            pot = LennardJones(1.0, 1.0, 2.5, truncation="shift", precision=args.dtype)
            rows.append(time_md([atoms], pot, device, "nve", args.steps, args.warmup,
                                args.block_steps, temperature=0.72))
            if device.type == "cuda":
                torch.cuda.empty_cache()
            peer_rows += _time_peers(peers, [atoms], rows[-1], device, "nve", args, 0.72)
        title = f"LJ liquid ρ*=0.8442, r_c=2.5σ, skin 0.3σ, NVE, {args.dtype} pair terms"
    else:
        systems = kob_andersen_replicas(args.replicas, args.atoms_per_replica)
        pot = kob_andersen(precision=args.dtype)
        rows.append(time_md(systems, pot, device, "nvt", args.steps, args.warmup,
                            args.block_steps, temperature=0.64))
        peer_rows += _time_peers(peers, systems, rows[-1], device, "nvt", args, 0.64)
        title = (f"Kob–Andersen {args.replicas} × {args.atoms_per_replica} atoms, "
                 f"Nosé–Hoover NVT T=0.64, {args.dtype} pair terms")
    for row in rows:
        row["achieved_gb_per_s"] = row["achieved_bytes_per_s"] / 1e9
    report = {"problem": args.problem, "title": title, "environment": env,
              "settings": {"steps": args.steps, "warmup": args.warmup,
                           "block_steps": args.block_steps, "dtype": args.dtype},
              "rows": rows, "peers": peer_rows}
    print(f"\n{title}")
    print(f"device {env['device']}, torch {env['torch']}, commit {env['commit']}, "
          f"{env['date']}; copy bandwidth {env['copy_bandwidth_GB_per_s']:.0f} GB/s")
    print(format_table(rows, ENGINE_COLUMNS))
    if peers:
        timed = [r for r in peer_rows if "missing" not in r]
        if timed:
            print(f"\npeers, same systems and run ({args.peer_steps} timed steps each):")
            print(format_table(timed, PEER_COLUMNS))
        for r in peer_rows:
            if "missing" in r:
                print(f"peer {r['peer']}: not run — {r['missing']}")
    if args.json:
        _write_json(args.json, report)
    return 0


def add_parser(sub) -> None:
    bench = sub.add_parser("bench", help="time MD on benchmark systems and print a table",
                           description="Time MD on benchmark systems; prints a table and "
                                       "optionally writes JSON.")
    bench.add_argument("problem", choices=["lj", "kalj", "model"],
                       help="lj: LJ liquid; kalj: Kob–Andersen replicas; model: DeepPot-SE")
    bench.add_argument("--atoms", default=None,
                       help="lj, model: comma-separated system sizes (fcc, 4n³ atoms; "
                            "default 4000,32000 for lj, 10976 for model)")
    bench.add_argument("--replicas", type=int, default=256, help="kalj: number of replicas")
    bench.add_argument("--atoms-per-replica", type=int, default=4096)
    bench.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                       help="precision of the pair terms (positions and sums stay float64)")
    bench.add_argument("--steps", type=int, default=200, help="timed steps")
    bench.add_argument("--warmup", type=int, default=None,
                       help="lj, kalj: untimed steps first (default 50; kalj 1000: the "
                            "replicas start on a lattice and need ~700 steps to cool to T = "
                            "0.64). model: the timed steps run once untimed first")
    bench.add_argument("--block-steps", type=int, default=20,
                       help="steps per host-sync-free block (a CUDA graph on a GPU)")
    bench.add_argument("--peers", metavar="NAMES",
                       help="comma-separated peers to time on the same systems: torchsim "
                            "(lj, kalj), deepmd (model)")
    bench.add_argument("--peer-steps", type=int, default=20, help="timed steps of each peer")
    bench.add_argument("--peer-warmup", type=int, default=3, help="untimed peer steps first")
    bench.add_argument("--precisions", default="float64,float32,mixed",
                       help="model: DeepPot-SE precision modes to time")
    bench.add_argument("--r-cut", type=float, default=6.0, help="model: cutoff (Å)")
    bench.add_argument("--skin", type=float, default=1.0, help="model: Verlet skin (Å)")
    bench.add_argument("--sel", type=int, default=96,
                       help="model: deepmd-kit neighbour slots (sel)")
    bench.add_argument("--train-steps", type=int, default=10,
                       help="model: timed training steps per precision")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--json", metavar="PATH", help="write the results as JSON")
    bench.set_defaults(func=run_bench)
