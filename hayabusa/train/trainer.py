"""Training DeepPot-SE-style potentials on labelled frames.

Loss = p_e·mean((ΔE/N)²) + p_f·mean(|ΔF|²)/3 + p_s·mean(Δσ²), with prefactors that move from
their start to their limit values as the learning rate decays, as in DeePMD:
p = p_limit + (p_start − p_limit)·lr/lr_start. Adam; exponential or cosine learning rate;
gradient-norm clipping; EMA of the weights (used for validation and for the saved model);
batches filled up to a number of atoms. Metrics: energy meV/atom, forces meV/Å, stress GPa.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import ase.units
import numpy as np
import torch

from ..neighbors import NeighborList
from ..state import State
from .data import Frame


@dataclass
class TrainSettings:
    lr_start: float = 1e-3
    lr_stop: float = 1e-6
    schedule: str = "exp"  # "exp" or "cosine"
    total_steps: int = 1000
    batch_atoms: int = 256
    energy_prefactor: tuple[float, float] = (0.02, 1.0)  # (start, limit)
    force_prefactor: tuple[float, float] = (1000.0, 1.0)
    stress_prefactor: tuple[float, float] = (0.0, 0.0)
    ema_decay: float = 0.99
    clip_norm: float = 10.0
    seed: int = 0


class Batch:
    """Frames stacked into one State with their labels (float64 tensors)."""

    def __init__(self, frames: Sequence[Frame], species, device="cpu"):
        self.state = State.from_atoms([f.atoms for f in frames], device=device, species=species)
        self.n_atoms = self.state.n_atoms_per_system.to(torch.float64)
        self.energy = torch.tensor([f.energy for f in frames], dtype=torch.float64,
                                   device=device)
        self.forces = torch.tensor(np.concatenate([f.forces for f in frames]),
                                   dtype=torch.float64, device=device)
        has = [f.stress is not None for f in frames]
        self.stress = torch.tensor(np.stack([f.stress if f.stress is not None
                                             else np.zeros((3, 3)) for f in frames]),
                                   dtype=torch.float64, device=device)
        self.stress_mask = torch.tensor(has, device=device)
        self.neighbors = None

    def evaluate(self, model, compute_stress: bool):
        if self.neighbors is None:
            self.neighbors = NeighborList(model.cutoff).build(self.state)
        return model(self.state, self.neighbors, compute_stress=compute_stress)


def set_environment_scales(model, frames: Sequence[Frame]) -> None:
    """Store per-type scales ``dstd`` [T, 4] (RMS of the environment-matrix entries over all
    neighbours within r_cut: radial, and the three angular columns together) so that the
    networks see inputs of order one. Computed once, stored with the model."""
    batch = Batch(frames, model.species)
    nl = NeighborList(model.cutoff).build(batch.state)
    with torch.no_grad():
        model.dstd.fill_(1.0)
        env, _, inside, ti, _ = model.environment(batch.state, nl)
        for t in range(len(model.species)):
            sel = inside & (ti[:, None] == t)
            if sel.any():
                e = env[sel].double()
                radial = e[:, 0].pow(2).mean().sqrt()
                angular = e[:, 1:].pow(2).mean().sqrt()
                model.dstd[t] = torch.stack([radial, angular, angular, angular])


def _prefactor(pair, lr, lr_start):
    start, limit = pair
    return limit + (start - limit) * lr / lr_start


class Trainer:
    def __init__(self, model, train: Sequence[Frame], valid: Sequence[Frame],
                 settings: TrainSettings | None = None, device="cpu"):
        self.model = model.to(device)
        self.settings = s = settings or TrainSettings()
        self.device = device
        self.train_frames, self.valid_frames = list(train), list(valid)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=s.lr_start)
        self.ema = copy.deepcopy(model).eval()
        self.step = 0
        self.rng = np.random.default_rng(s.seed)
        self._batches: list[Batch] = []
        self._valid = self._make_batches(self.valid_frames, shuffle=False)

    def _make_batches(self, frames, shuffle: bool) -> list[Batch]:
        order = self.rng.permutation(len(frames)) if shuffle else np.arange(len(frames))
        batches, current, atoms = [], [], 0
        for i in order:
            n = len(frames[i].atoms)
            if current and atoms + n > self.settings.batch_atoms:
                batches.append(Batch(current, self.model.species, self.device))
                current, atoms = [], 0
            current.append(frames[i])
            atoms += n
        if current:
            batches.append(Batch(current, self.model.species, self.device))
        return batches

    def learning_rate(self, step: int) -> float:
        s = self.settings
        x = min(step / max(s.total_steps, 1), 1.0)
        if s.schedule == "cosine":
            return s.lr_stop + 0.5 * (s.lr_start - s.lr_stop) * (1 + math.cos(math.pi * x))
        return s.lr_start * (s.lr_stop / s.lr_start) ** x

    def loss(self, model, batch: Batch, lr: float):
        s = self.settings
        want_stress = bool(batch.stress_mask.any()) and s.stress_prefactor != (0.0, 0.0)
        pred = batch.evaluate(model, want_stress)
        pe = _prefactor(s.energy_prefactor, lr, s.lr_start)
        pf = _prefactor(s.force_prefactor, lr, s.lr_start)
        loss = pe * (((pred.energy - batch.energy) / batch.n_atoms) ** 2).mean()
        loss = loss + pf * ((pred.forces - batch.forces) ** 2).mean()
        if want_stress:
            ps = _prefactor(s.stress_prefactor, lr, s.lr_start)
            err = (pred.stress - batch.stress)[batch.stress_mask]
            loss = loss + ps * (err**2).mean()
        return loss

    def train_step(self) -> float:
        if not self._batches:
            self._batches = self._make_batches(self.train_frames, shuffle=True)
        batch = self._batches.pop()
        lr = self.learning_rate(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self.optimizer.zero_grad()
        loss = self.loss(self.model, batch, lr)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.clip_norm)
        self.optimizer.step()
        with torch.no_grad():
            d = self.settings.ema_decay
            for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                e.mul_(d).add_(p, alpha=1 - d)
        self.step += 1
        return float(loss.detach())

    def metrics(self, frames: Sequence[Frame] | None = None, model=None) -> dict:
        """MAE and RMSE of energy (meV/atom), forces (meV/Å), stress (GPa) with the EMA model."""
        model = model or self.ema
        batches = self._valid if frames is None else self._make_batches(frames, shuffle=False)
        de, df, ds = [], [], []
        for b in batches:
            pred = b.evaluate(model, bool(b.stress_mask.any()))
            de.append(((pred.energy - b.energy) / b.n_atoms).detach())
            df.append((pred.forces - b.forces).detach().flatten())
            if b.stress_mask.any():
                ds.append((pred.stress - b.stress)[b.stress_mask].detach().flatten())
        out = {}
        for name, parts, scale in (("energy_meV_per_atom", de, 1e3), ("forces_meV_per_A", df, 1e3),
                                   ("stress_GPa", ds, 1 / ase.units.GPa)):
            if parts:
                err = torch.cat(parts) * scale
                out[name] = {"mae": float(err.abs().mean()),
                             "rmse": float(err.pow(2).mean().sqrt())}
        return out
