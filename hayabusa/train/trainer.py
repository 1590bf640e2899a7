"""Training DeepPot-SE-style potentials on labelled frames.

Loss over a batch of F frames with N atoms (F_s of them with a stress label):
    L = p_e·Σ(ΔE/n)²/F + p_f·Σ|ΔF|²/(3N) + p_v·Σ(Δσ·V/n)²/(9F_s)
(energy per atom, force components, virial per atom, all in eV), with prefactors that move
from their start to their limit values as the learning rate decays, as in DeePMD:
p = p_limit + (p_start − p_limit)·lr/lr_start. Adam; exponential or cosine learning rate;
gradient-norm clipping; EMA of the weights (used for validation and for the saved model);
batches filled up to a number of atoms; validation every ``valid_every`` steps with early
stopping after ``patience`` validations without improvement of the validation loss (the loss
above with the limit prefactors); checkpoints that resume bit for bit; data parallel over
processes (see ``ddp``).
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..errors import InputError
from ..files import load_torch, write_atomic
from ..models import ModelPotential
from ..neighbors import NeighborList
from ..neighbors.pairs import Pairs
from ..state import State
from .data import Frame
from .ddp import Distributed
from .metrics import Predictions, errors, weighted_loss

TRAIN_CHECKPOINT_FORMAT = "hayabusa-train-checkpoint-1"


@dataclass
class TrainSettings:
    lr_start: float = 1e-3
    lr_stop: float = 1e-6
    schedule: str = "exp"  # "exp" or "cosine"
    total_steps: int = 1000
    batch_atoms: int = 256  # a batch takes frames (in shuffled order) up to this many atoms
    energy_prefactor: tuple[float, float] = (0.02, 1.0)  # (start, limit)
    force_prefactor: tuple[float, float] = (1000.0, 1.0)
    stress_prefactor: tuple[float, float] = (0.0, 0.0)  # on the virial per atom
    ema_decay: float = 0.99
    clip_norm: float = 10.0
    seed: int = 0
    valid_every: int = 100  # steps between validations
    patience: int | None = None  # validations without improvement before stopping

    def prefactors(self, lr: float) -> tuple[float, float, float]:
        """(p_e, p_f, p_v) at learning rate ``lr``."""
        return tuple(limit + (start - limit) * lr / self.lr_start for start, limit in
                     (self.energy_prefactor, self.force_prefactor, self.stress_prefactor))


class _PairsNeighborList(NeighborList):
    """A NeighborList whose pairs were searched frame by frame beforehand (the frames never
    move, so the type sections are as wide as the most neighbours of a type, no wider)."""

    section_headroom = False

    def __init__(self, cutoff: float, pairs: Pairs):
        super().__init__(cutoff, growth=1.0)
        self._pairs = pairs

    def search(self, state) -> Pairs:
        return self._pairs


@dataclass
class TrainingBatch:
    """Frames stacked into one State with their labels (float64) and neighbor list."""

    state: State
    neighbors: NeighborList
    energy: torch.Tensor  # [S] eV
    forces: torch.Tensor  # [N, 3] eV/Å
    stress: torch.Tensor  # [S, 3, 3] eV/Å³ (zeros where unlabelled)
    stress_mask: torch.Tensor  # [S] bool
    n_atoms: torch.Tensor  # [S] float64

    def evaluate(self, model, compute_stress: bool):
        """The model core's energies, forces (and stress) on the batch."""
        return ModelPotential(model)(self.state, self.neighbors, compute_stress=compute_stress)


class FrameSet:
    """Labelled frames whose tensors and pair lists (within ``cutoff``) are made once, at
    first use, and kept on ``device``; ``batch(indices)`` stacks them."""

    def __init__(self, frames: Sequence[Frame], species, cutoff: float, device="cpu"):
        self.frames = list(frames)
        self.species = tuple(species)
        self.cutoff = float(cutoff)
        self.device = torch.device(device)
        self._items: dict[int, tuple] = {}

    def __len__(self) -> int:
        return len(self.frames)

    def n_atoms(self, i: int) -> int:
        return len(self.frames[i].atoms)

    def _item(self, i: int) -> tuple:
        if i not in self._items:
            f = self.frames[i]
            state = State.from_atoms(f.atoms, device=self.device, species=self.species)
            pairs = NeighborList(self.cutoff).search(state)
            stress = np.zeros((3, 3)) if f.stress is None else f.stress
            labels = (torch.tensor(f.forces, dtype=torch.float64, device=self.device),
                      torch.tensor(stress, dtype=torch.float64, device=self.device))
            self._items[i] = (state, pairs, f.energy, f.stress is not None, *labels)
        return self._items[i]

    def batch(self, indices: Sequence[int]) -> TrainingBatch:
        items = [self._item(i) for i in indices]
        states = [it[0] for it in items]
        sizes = [s.n_atoms for s in states]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        dev = self.device

        def cat(name):
            return torch.cat([getattr(s, name) for s in states])

        state = State(positions=cat("positions"), velocities=cat("velocities"),
                      masses=cat("masses"), atomic_numbers=cat("atomic_numbers"),
                      type_ids=cat("type_ids"), cell=cat("cell"), pbc=cat("pbc"),
                      system_idx=torch.repeat_interleave(torch.arange(len(items), device=dev),
                                                         torch.tensor(sizes, device=dev)),
                      species=self.species)
        pairs = Pairs(torch.cat([it[1].i + int(o) for it, o in zip(items, offsets, strict=True)]),
                      torch.cat([it[1].j + int(o) for it, o in zip(items, offsets, strict=True)]),
                      torch.cat([it[1].shift for it in items]))
        neighbors = _PairsNeighborList(self.cutoff, pairs).build(state)
        return TrainingBatch(state, neighbors,
                     energy=torch.tensor([it[2] for it in items], dtype=torch.float64,
                                         device=dev),
                     forces=torch.cat([it[4] for it in items]),
                     stress=torch.stack([it[5] for it in items]),
                     stress_mask=torch.tensor([it[3] for it in items], device=dev),
                     n_atoms=torch.tensor(sizes, dtype=torch.float64, device=dev))

    def batches(self, indices: Sequence[int], batch_atoms: int) -> list[list[int]]:
        """``indices`` in order, grouped into batches of at most ``batch_atoms`` atoms (a
        larger frame forms a batch of its own)."""
        out, current, atoms = [], [], 0
        for i in indices:
            n = self.n_atoms(i)
            if current and atoms + n > batch_atoms:
                out.append(current)
                current, atoms = [], 0
            current.append(int(i))
            atoms += n
        if current:
            out.append(current)
        return out

    def fingerprint(self) -> str:
        """SHA-256 of the frames' numbers, positions, cells and labels, in order."""
        h = hashlib.sha256()
        for f in self.frames:
            for a in (f.atoms.numbers, f.atoms.positions, f.atoms.cell.array,
                      np.float64(f.energy), f.forces):
                h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()


def as_frameset(data: FrameSet | Sequence[Frame], species, cutoff: float,
               device="cpu") -> FrameSet:
    """``data`` itself if it is a FrameSet for ``cutoff``, else a FrameSet of the frames."""
    if isinstance(data, FrameSet) and data.cutoff == float(cutoff):
        return data
    frames = data.frames if isinstance(data, FrameSet) else data
    return FrameSet(frames, species, cutoff, device)


def fit_statistics(model, frames: FrameSet | Sequence[Frame], batch_atoms: int = 4096) -> None:
    """Let ``model`` set its input statistics from ``frames`` (``fit_input_statistics``:
    normalisation, mean neighbours, …), in batches of about ``batch_atoms`` atoms."""
    data = as_frameset(frames, model.species, model.cutoff, model.dstd.device)
    batches = (data.batch(chunk) for chunk in data.batches(range(len(data)), batch_atoms))
    model.fit_input_statistics((b.state, b.neighbors) for b in batches)


class Trainer:
    """Trains ``model`` on ``train`` frames; validates the EMA weights on ``valid`` frames.

    ``dist``: the process group handle for data-parallel training (None: one process)."""

    def __init__(self, model, train: FrameSet | Sequence[Frame],
                 valid: FrameSet | Sequence[Frame],
                 settings: TrainSettings | None = None, device="cpu",
                 dist: Distributed | None = None):
        self.settings = s = settings or TrainSettings()
        if s.schedule not in ("exp", "cosine"):
            raise InputError(f"schedule must be exp or cosine, got {s.schedule!r}")
        self.device = torch.device(device)
        self.dist = dist
        self.model = model.to(self.device)
        if dist is not None:
            dist.broadcast_module(self.model)
        self.train_data = as_frameset(train, model.species, model.cutoff, self.device)
        self.valid_data = as_frameset(valid, model.species, model.cutoff, self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=s.lr_start)
        self.ema = copy.deepcopy(self.model).eval()
        self.step = 0
        self.epoch, self.position = 0, 0  # next batch: self._plan(epoch)[position]
        self._plan_cache: tuple[int, list[list[int]]] | None = None
        self.best_loss, self.best_step, self.best_weights = math.inf, -1, None
        self.bad_validations = 0
        self.stopped = False  # early stopping triggered
        # since the last validation: Σ loss, steps, Σ(ΔE/n)², frames, Σ ΔF², components
        self._running = torch.zeros(6, dtype=torch.float64, device=self.device)

    # ---------------------------------------------------------------- schedule
    def learning_rate(self, step: int) -> float:
        s = self.settings
        x = min(step / max(s.total_steps, 1), 1.0)
        if s.schedule == "cosine":
            return s.lr_stop + 0.5 * (s.lr_start - s.lr_stop) * (1 + math.cos(math.pi * x))
        return s.lr_start * (s.lr_stop / s.lr_start) ** x

    def _plan(self, epoch: int) -> list[list[int]]:
        """Batches of epoch ``epoch``: a permutation seeded by (seed, epoch), grouped."""
        if self._plan_cache is None or self._plan_cache[0] != epoch:
            order = np.random.default_rng([self.settings.seed, epoch]).permutation(
                len(self.train_data))
            self._plan_cache = (epoch, self.train_data.batches(order, self.settings.batch_atoms))
        return self._plan_cache[1]

    def _next_batch(self) -> list[int]:
        plan = self._plan(self.epoch)
        indices = plan[self.position]
        self.position += 1
        if self.position == len(plan):
            self.epoch, self.position = self.epoch + 1, 0
        return indices

    # -------------------------------------------------------------------- step
    def loss(self, indices: Sequence[int], lr: float, share: Sequence[int] | None = None):
        """Loss of the training frames ``indices`` at learning rate ``lr`` (the model in its
        current mode), and [Σ(ΔE/n)², frames, Σ ΔF², components] of the frames evaluated.

        ``share``: evaluate only these of the frames (a rank's part of a batch); the result
        is its part of the loss (normalised by the counts of all ``indices``)."""
        share = indices if share is None else share
        n_frames = len(indices)
        n_atoms = sum(self.train_data.n_atoms(i) for i in indices)
        n_stress = sum(self.train_data.frames[i].stress is not None for i in indices)
        pe, pf, pv = self.settings.prefactors(lr)
        batch = self.train_data.batch(share)
        want_stress = bool(pv) and bool(batch.stress_mask.any())
        pred = batch.evaluate(self.model, want_stress)
        de = (pred.energy - batch.energy) / batch.n_atoms
        df = pred.forces - batch.forces
        se_e, se_f = (de**2).sum(), (df**2).sum()
        loss = pe * se_e / n_frames + pf * se_f / (3 * n_atoms)
        if want_stress:
            v = (batch.state.volume / batch.n_atoms)[:, None, None]
            dv = ((pred.stress - batch.stress) * v)[batch.stress_mask]
            loss = loss + pv * (dv**2).sum() / (9 * n_stress)
        stats = torch.stack([se_e.detach(), de.new_tensor(float(len(share))), se_f.detach(),
                             df.new_tensor(float(df.numel()))])
        return loss, stats

    def train_step(self) -> None:
        """One optimiser step on the next batch (all ranks share it, each its frames)."""
        if not len(self.train_data):
            raise InputError("no training frames")
        s = self.settings
        indices = self._next_batch()
        mine = indices if self.dist is None else indices[self.dist.rank::self.dist.world_size]
        lr = self.learning_rate(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self.optimizer.zero_grad(set_to_none=False)
        if mine:
            loss, stats = self.loss(indices, lr, mine)
            loss.backward()
            self._running[0] += loss.detach()
            self._running[2:] += stats
        for p in self.model.parameters():
            if p.grad is None:  # every rank reduces the same list, and Adam sees every one
                p.grad = torch.zeros_like(p)
        if self.dist is not None:
            self.dist.all_reduce_gradients(self.model.parameters())
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.clip_norm)
        self.optimizer.step()
        self._running[1] += 1
        with torch.no_grad():
            d = min(s.ema_decay, (1 + self.step) / (10 + self.step))
            for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                e.mul_(d).add_(p, alpha=1 - d)
        self.step += 1

    # -------------------------------------------------------------- evaluation
    def predict(self, data: FrameSet | Sequence[Frame], model=None,
                batch_atoms: int | None = None) -> Predictions:
        """Labels and predictions of ``model`` (default: the EMA weights) on every frame of
        ``data``; with several ranks each evaluates a share and all gather the result."""
        data = as_frameset(data, self.model.species, self.model.cutoff, self.device)
        model = model or self.ema
        mine = range(len(data)) if self.dist is None else self.dist.shares(len(data))
        pred = predict(model, data, mine, batch_atoms or self.settings.batch_atoms)
        if self.dist is not None:
            pred = Predictions.concat(self.dist.all_gather(pred))
        return pred

    def metrics(self, frames: Sequence[Frame] | None = None, model=None) -> dict:
        """MAE and RMSE of energy (meV/atom), forces (meV/Å), stress (GPa); default: the EMA
        weights on the validation frames."""
        return errors(self.predict(self.valid_data if frames is None else frames, model))

    def validate(self) -> dict:
        """Validate the EMA weights; keep them if the validation loss improved; count towards
        early stopping. Returns a log row (train columns average the steps since the last
        validation)."""
        s = self.settings
        running = self._running.clone()
        if self.dist is not None:  # sums over the ranks; every rank counted the steps
            summed = [0, 2, 3, 4, 5]
            running[summed] = self.dist.all_reduce(running[summed].clone())
        self._running.zero_()
        loss_sum, steps, se_e, n_e, se_f, n_f = running.tolist()
        row = {"step": self.step, "epoch": self.epoch, "lr": self.learning_rate(self.step),
               "loss": loss_sum / max(steps, 1),
               "train_energy_rmse_meV_per_atom": 1e3 * math.sqrt(se_e / n_e) if n_e else math.nan,
               "train_forces_rmse_meV_per_A": 1e3 * math.sqrt(se_f / n_f) if n_f else math.nan}
        if len(self.valid_data):
            pred = self.predict(self.valid_data)
            m = errors(pred)
            loss = weighted_loss(pred, *(limit for _, limit in (
                s.energy_prefactor, s.force_prefactor, s.stress_prefactor)))
            row.update(valid_loss=loss,
                       valid_energy_rmse_meV_per_atom=m["energy_meV_per_atom"]["rmse"],
                       valid_forces_rmse_meV_per_A=m["forces_meV_per_A"]["rmse"],
                       valid_stress_rmse_GPa=m.get("stress_GPa", {}).get("rmse", math.nan))
            if loss < self.best_loss:
                self.best_loss, self.best_step = loss, self.step
                self.best_weights = {k: v.detach().clone()
                                     for k, v in self.ema.state_dict().items()}
                self.bad_validations = 0
            else:
                self.bad_validations += 1
                if s.patience is not None and self.bad_validations >= s.patience:
                    self.stopped = True
        return row

    def best_model(self):
        """A copy of the EMA model with the weights of the best validation (or the last)."""
        model = copy.deepcopy(self.ema)
        if self.best_weights is not None:
            model.load_state_dict(self.best_weights)
        return model.eval()

    # ------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {"format": TRAIN_CHECKPOINT_FORMAT, "step": self.step, "epoch": self.epoch,
                "position": self.position, "model": self.model.state_dict(),
                "ema": self.ema.state_dict(), "optimizer": self.optimizer.state_dict(),
                "best_loss": self.best_loss, "best_step": self.best_step,
                "best_weights": self.best_weights, "bad_validations": self.bad_validations,
                "stopped": self.stopped, "running": self._running,
                "settings": asdict(self.settings), "model_config": self.model.config,
                "data": self.train_data.fingerprint()}

    def load_state_dict(self, d: dict, source: str = "checkpoint") -> None:
        """Restore a state saved by ``state_dict``; InputError if it belongs to another
        model architecture, other settings or other training frames."""
        if d.get("format") != TRAIN_CHECKPOINT_FORMAT:
            raise InputError(f"{source}: not a hayabusa training checkpoint")
        mine = {"model_config": self.model.config, "settings": asdict(self.settings),
                "data": self.train_data.fingerprint()}
        for key, what in (("model_config", "model"), ("settings", "training settings"),
                          ("data", "training frames")):
            theirs = d[key]
            if key == "settings":
                theirs = {k: tuple(v) if isinstance(v, list) else v for k, v in theirs.items()}
            if theirs != mine[key]:
                diff = ""
                if isinstance(theirs, dict):
                    keys = sorted(k for k in set(theirs) | set(mine[key])
                                  if theirs.get(k) != mine[key].get(k))
                    diff = f" ({', '.join(keys)})"
                raise InputError(f"{source}: written for another {what}{diff}; resume with "
                                 f"the config and data of that run")
        self.model.load_state_dict(d["model"])
        self.ema.load_state_dict(d["ema"])
        self.optimizer.load_state_dict(d["optimizer"])
        self.step, self.epoch, self.position = d["step"], d["epoch"], d["position"]
        self.best_loss, self.best_step = d["best_loss"], d["best_step"]
        self.best_weights = d["best_weights"]
        self.bad_validations, self.stopped = d["bad_validations"], d["stopped"]
        self._running.copy_(d["running"])

    def save_checkpoint(self, path) -> None:
        """Write the training state atomically (temporary file + rename)."""
        state = self.state_dict()
        write_atomic(path, lambda tmp: torch.save(state, tmp))

    def load_checkpoint(self, path) -> None:
        d = load_torch(path, "checkpoint", map_location=self.device)
        if not isinstance(d, dict):
            raise InputError(f"{path}: not a hayabusa training checkpoint")
        self.load_state_dict(d, str(path))


def predict(model, data: FrameSet, indices: Sequence[int], batch_atoms: int) -> Predictions:
    """Labels and predictions of ``model`` on the frames ``indices`` of ``data``."""
    parts = []
    for chunk in data.batches(indices, batch_atoms):
        b = data.batch(chunk)
        want_stress = bool(b.stress_mask.any())
        out = b.evaluate(model, want_stress)
        mask = b.stress_mask
        stress = out.stress[mask] if want_stress else b.stress[mask]

        def np64(t):
            return t.detach().to(torch.float64).cpu().numpy()

        parts.append(Predictions(
            energy_ref=np64(b.energy / b.n_atoms), energy=np64(out.energy / b.n_atoms),
            forces_ref=np64(b.forces), forces=np64(out.forces),
            stress_ref=np64(b.stress[mask]), stress=np64(stress),
            volume_per_atom=np64((b.state.volume / b.n_atoms)[mask])))
    if not parts:
        empty = np.zeros(0)
        return Predictions(empty, empty, np.zeros((0, 3)), np.zeros((0, 3)),
                           np.zeros((0, 3, 3)), np.zeros((0, 3, 3)), empty)
    return Predictions.concat(parts)
