"""GPU check of the core engine: `hayabusa md` on CUDA matches the CPU run in float64.

Runs the given config (default examples/kalj.yaml) for N steps (default 100) on the CPU and on
CUDA through the CLI, compares the final checkpoints and prints a short table.

    python3 bench/gpu_md_check.py [CONFIG] [--steps N] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from hayabusa.cli import main as hayabusa_main


def run(config: str, device: str, steps: int, out: Path) -> tuple[dict, float]:
    t0 = time.perf_counter()
    code = hayabusa_main(["md", config, "--device", device, "--steps", str(steps),
                          "--output", str(out), "--overwrite"])
    if code != 0:
        raise SystemExit(f"hayabusa md on {device} exited with {code}")
    return torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True), \
        time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", nargs="?", default="examples/kalj.yaml")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", default="runs/gpu_md_check")
    args = parser.parse_args()
    out = Path(args.out)
    cpu, t_cpu = run(args.config, "cpu", args.steps, out / "cpu")
    gpu, t_gpu = run(args.config, "cuda", args.steps, out / "cuda")
    rows = []
    for key in ("positions", "velocities"):
        diff = (cpu["state"][key] - gpu["state"][key]).abs().max().item()
        rows.append((f"max |Δ{key}|", f"{diff:.3e}"))
    de = (cpu["result"]["energy"] - gpu["result"]["energy"]).abs().max().item()
    rows.append(("max |ΔPotEng|", f"{de:.3e}"))
    rows.append(("wall time cpu / cuda (s)", f"{t_cpu:.1f} / {t_gpu:.1f}"))
    print(f"\n{args.config}: {args.steps} steps, float64, "
          f"{torch.cuda.get_device_name()} vs CPU")
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    pos_ok = float(rows[0][1]) < 1e-10
    print(f"positions match to 1e-10: {'yes' if pos_ok else 'NO'}")


if __name__ == "__main__":
    main()
