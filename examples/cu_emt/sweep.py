"""Train variants of examples/cu_emt/train.yaml and print one result line per variant.

    OMP_NUM_THREADS=1 python examples/cu_emt/sweep.py NAME KEY=VALUE [KEY=VALUE ...]

KEY is a dotted config key (``training.steps``, ``model.r_cut_A``, ``seed``), VALUE is YAML
(``2000``, ``[0.0, 0.0]``). Prints ``NAME: test E … meV/atom, F … meV/Å, S … GPa; train …
s`` from a run in a temporary folder. Run several in parallel (one process per core) to
compare settings by accuracy and CPU time.
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from hayabusa.config import resolve_device
from hayabusa.train.config import load_train_config
from hayabusa.train.job import run_training

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> None:
    name, overrides = argv[0], argv[1:]
    torch.set_num_threads(1)
    config = yaml.safe_load((HERE / "train.yaml").read_text())
    for item in overrides:
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[leaf] = yaml.safe_load(value)
    config["data"]["files"] = [str(HERE / f) for f in config["data"]["files"]]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.yaml"
        path.write_text(yaml.safe_dump(config))
        cfg = load_train_config(path)
        metrics = run_training(cfg, path, Path(tmp) / "out", resolve_device(cfg.device),
                               stream=io.StringIO())
        seconds = yaml.safe_load((Path(tmp) / "out" / "metrics.json").read_text())["run"][
            "train_seconds"]
    t = metrics["test"]
    print(f"{name}: test E {t['energy_meV_per_atom']['rmse']:.2f} meV/atom, "
          f"F {t['forces_meV_per_A']['rmse']:.1f} meV/Å, S {t['stress_GPa']['rmse']:.3f} GPa; "
          f"train {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
