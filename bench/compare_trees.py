"""Time the same ``hayabusa bench`` commands on two source trees in one run, alternately, and
print the ratio: does a change keep the speed of the tree before it?

    python3 bench/compare_trees.py OLD_TREE [--repeats 2] [--out DIR] [--only lj,kalj,model,train]

OLD_TREE holds the ``hayabusa`` package of the earlier commit (e.g. ``git archive BASE
hayabusa | tar -x -C .old``); the current tree is this repository. Each bench runs in its own
process (``python3 -m hayabusa bench …`` with PYTHONPATH pointing at the tree), the trees
alternate (old, new, old, new, …) so drifts of the machine fall on both, and every run writes
its JSON to ``--out``. The table: the median ms per MD step (ms per frame for training) of
each tree and new/old.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

BENCHES = {
    "lj": ["lj", "--atoms", "4000,32000,1048576", "--steps", "400", "--block-steps", "5"],
    "kalj": ["kalj", "--replicas", "256", "--steps", "200", "--block-steps", "5"],
    "model": ["model", "--peers", "deepmd", "--precisions", "float64,mixed", "--train-steps", "5"],
    # training throughput alone (the MD part short and eager)
    "train": ["model", "--precisions", "float64,mixed", "--train-steps", "40", "--steps", "10",
              "--block-steps", "0"],
}


def run(tree: Path, name: str, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{tree}:{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "hayabusa", "bench", *BENCHES[name], "--json", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    (out.with_suffix(".log")).write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{tree} {name}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return json.loads(out.read_text())


def rows_of(report: dict) -> dict:
    """{(size, precision): ms} of hayabusa's rows: ms per MD step, and for training
    (size "training") ms per frame."""
    rows = report.get("rows") or report.get("md") or []
    out = {}
    for r in rows:
        if r.get("engine", "hayabusa") != "hayabusa" or "ms_per_step" not in r:
            continue
        out[(r.get("atoms"), r.get("precision", r.get("dtype", "")))] = r["ms_per_step"]
    for r in report.get("training") or []:
        out[("training", r["precision"])] = 1e3 / r["frames_per_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/compare_trees"))
    parser.add_argument("--only", default="lj,kalj,model")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    trees = {"old": args.old.resolve(), "new": Path.cwd()}
    times: dict = {}
    for name in args.only.split(","):
        for k in range(args.repeats):
            for label, tree in trees.items():
                report = run(tree, name, args.out / f"{name}-{label}-{k}.json")
                for key, ms in rows_of(report).items():
                    times.setdefault((name, *key), {}).setdefault(label, []).append(ms)
                print(f"{name} {label} #{k}: {rows_of(report)}", flush=True)
    print(f"\n{'bench':<6} {'atoms':>8} {'precision':>9} {'old ms':>9} {'new ms':>9} "
          f"{'new/old':>8}  (median of {args.repeats})")
    table = []
    for (name, atoms, precision), by_tree in times.items():
        old, new = (statistics.median(by_tree.get(t, [float("nan")])) for t in ("old", "new"))
        table.append({"bench": name, "atoms": atoms, "precision": precision, "old_ms": old,
                      "new_ms": new, "ratio": new / old, "old_runs": by_tree.get("old"),
                      "new_runs": by_tree.get("new")})
        print(f"{name:<6} {atoms!s:>8} {precision:>9} {old:>9.4f} {new:>9.4f} "
              f"{new / old:>8.3f}")
    (args.out / "summary.json").write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
