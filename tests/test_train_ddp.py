"""Data-parallel training: ``torchrun`` with 2 CPU processes (gloo) trains like one process
with the same batches."""

import json
import os
import subprocess
import sys

import ase.io
import torch
from test_train import mixed_sizes

from hayabusa.cli import main
from hayabusa.models import DeepPotSE
from hayabusa.train import Frame, Trainer, TrainSettings, fit_statistics
from hayabusa.train.ddp import Distributed

CONFIG = """\
seed: 3
device: cpu
data: {files: [cu.extxyz], split: {train: 0.7, valid: 0.15, test: 0.15}}
model: {r_cut_A: 4.5, r_smth_A: 3.0, embedding: [8, 16], axis_neurons: 4, fitting: [16, 16]}
training: {steps: 8, batch_atoms: 40, lr_start: 0.005, lr_stop: 0.001,
           stress_prefactor: [0.1, 1.0], valid_every: 4, checkpoint_every: 8}
"""


def frames(n, seed=0):
    """Cu cells of 4, 27 and 32 atoms: batches of one to three frames (one rank may get
    none of a batch)."""
    return mixed_sizes(n, seed, a=3.6)


def test_two_processes_train_like_one(tmp_path):
    ase.io.write(tmp_path / "cu.extxyz", frames(14))
    cfg = tmp_path / "train.yaml"
    cfg.write_text(CONFIG)
    assert main(["train", str(cfg), "-o", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "hayabusa", "train", str(cfg), "-o", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "cpu, 2 processes" in run.stdout
    assert run.stdout.count("hayabusa train: 8 steps") == 1  # rank 0 alone prints
    one = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert one["step"] == two["step"] == 8
    for part in ("model", "ema"):
        for name, a in one[part].items():
            b = two[part][name]
            assert a.dtype == torch.float64 or not a.is_floating_point()
            assert torch.allclose(a, b, rtol=0, atol=1e-10), (part, name)
    init = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)["optimizer"]
    moved = max(float(s["exp_avg"].abs().max()) for s in init["state"].values())
    assert moved > 0  # the runs did train
    ja = json.loads((tmp_path / "one" / "metrics.json").read_text())
    jb = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert jb["run"]["processes"] == 2
    for split in ("train", "valid", "test"):
        assert ja[split]["n_frames"] == jb[split]["n_frames"]
        for key in ("energy_meV_per_atom", "forces_meV_per_A", "stress_GPa"):
            for stat in ("mae", "rmse"):
                assert abs(ja[split][key][stat] - jb[split][key][stat]) <= \
                    1e-8 * abs(ja[split][key][stat]), (split, key, stat)


def gradient(rank, world, store, indices):
    """The model gradient of the batch ``indices`` (rank's share, then all-reduced)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    labelled = [Frame(a, a.get_potential_energy(), a.get_forces(), a.get_stress(voigt=False),
                      str(k)) for k, a in enumerate(frames(6, seed=2))]
    model = DeepPotSE([29], r_cut=4.5, r_smth=3.0, embedding=(8, 16), axis_neurons=4,
                      fitting=(16, 16), neighbor_norm=30.0)
    fit_statistics(model, labelled)
    dist = None
    if world > 1:
        torch.distributed.init_process_group("gloo", init_method=f"file://{store}",
                                             rank=rank, world_size=world)
        dist = Distributed(rank, world)
    trainer = Trainer(model, labelled, [], TrainSettings(stress_prefactor=(0.5, 1.0)),
                      dist=dist)
    loss, _ = trainer.loss(indices, 1e-4, indices[rank::world])
    loss.backward()
    if dist is not None:
        dist.all_reduce_gradients(model.parameters())
        torch.distributed.destroy_process_group()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def _worker(rank, world, store, indices, out):
    grad = gradient(rank, world, store, indices)
    if rank == 0:
        torch.save(grad, out)


def test_ranks_reduce_to_the_gradient_of_the_whole_batch(tmp_path):
    indices = [4, 0, 3, 1, 5]  # 27, 4, 4, 27, 32 atoms: ranks get 63 and 31 atoms
    torch.multiprocessing.spawn(_worker, args=(2, tmp_path / "store", indices,
                                               tmp_path / "grad.pt"), nprocs=2)
    two = torch.load(tmp_path / "grad.pt")
    one = gradient(0, 1, None, indices)
    assert two.abs().max() > 1e-3
    assert torch.allclose(one, two, rtol=1e-12, atol=1e-15)
    assert not torch.allclose(one, gradient(0, 1, None, indices[0::2]), rtol=1e-3)
