"""Count the top-level ATen operations of one DeepPot-SE training step (on the CPU): a
proxy, free of timing noise, for the kernels a GPU step launches.

    python3 bench/train_ops.py                   # this tree
    PYTHONPATH=.old python3 bench/train_ops.py   # an earlier tree (see compare_trees.py)

12 frames of 108-atom rattled fcc Cu with EMT labels, batches of 1,024 atoms, small nets.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.profiler import profile

from hayabusa.bench.model import emt_copper_frames
from hayabusa.models import DeepPotSE
from hayabusa.train.trainer import Trainer, TrainSettings


def main() -> None:
    data = emt_copper_frames(12, 108)
    torch.manual_seed(0)
    model = DeepPotSE([29], r_cut=6.0, r_smth=0.5, embedding=(4, 8), fitting=(8, 8),
                      axis_neurons=2)
    trainer = Trainer(model, data, data[:2], TrainSettings(total_steps=40, batch_atoms=1024))
    for _ in range(3):
        trainer.train_step()
    with profile() as prof:
        trainer.train_step()
    top = [e.name for e in prof.events() if e.name.startswith("aten::") and
           (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]
    print(f"top-level ATen operations per training step: {len(top)}")
    print(Counter(top).most_common(10))


if __name__ == "__main__":
    main()
