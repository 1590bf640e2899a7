"""The jobs behind ``hayabusa train`` and ``hayabusa test``: config → frames → model →
trainer → files (model, CSV log, checkpoint, metrics JSON, parity plot)."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
import time
from pathlib import Path

import ase.data
import ase.units
import numpy as np
import torch

from ..errors import InputError
from ..files import write_atomic
from ..models import get_kind, load_core, save_model
from ..rundir import (
    CHECKPOINT_NAME,
    CONFIG_COPY_NAME,
    MODEL_NAME,
    PARITY_NAME,
    TRAIN_LOG_NAME,
    TRAIN_METRICS_NAME,
    RunDirectory,
    new_run_id,
)
from .config import TrainConfig, data_files, species_numbers
from .data import fit_reference_energies, load_frames, split, summary
from .ddp import Distributed
from .metrics import Predictions, errors, format_table
from .trainer import FrameSet, Trainer, fit_statistics, predict

TRAIN_OUTPUTS = (MODEL_NAME, TRAIN_LOG_NAME, CHECKPOINT_NAME, TRAIN_METRICS_NAME, PARITY_NAME,
                 CONFIG_COPY_NAME)

#: log columns: (row key, console header, unit, console format)
LOG_COLUMNS = [("step", "step", "", "d"), ("epoch", "epoch", "", "d"), ("lr", "lr", "", ".3e"),
           ("loss", "loss", "", ".4g"),
           ("train_energy_rmse_meV_per_atom", "train E", "meV/at", ".4g"),
           ("train_forces_rmse_meV_per_A", "train F", "meV/Å", ".4g"),
           ("valid_energy_rmse_meV_per_atom", "valid E", "meV/at", ".4g"),
           ("valid_forces_rmse_meV_per_A", "valid F", "meV/Å", ".4g"),
           ("valid_stress_rmse_GPa", "valid S", "GPa", ".4g"),
           ("valid_loss", "valid loss", "", ".4g"), ("time_s", "time", "s", ".1f")]


def build_model(cfg: TrainConfig, train: FrameSet):
    """The untrained model core of ``cfg`` (its registered kind, seeded by ``cfg.seed``) with
    reference energies and input statistics from the training frames."""
    m = cfg.model
    torch.manual_seed(cfg.seed)
    model = get_kind(m.type).build(m, train.species).to(train.device)
    symbols = [ase.data.chemical_symbols[z] for z in train.species]
    if m.e0_eV == "least_squares":
        e0 = fit_reference_energies(train.frames, train.species)
    else:
        missing = [s for s in symbols if s not in m.e0_eV]
        if missing:
            raise InputError(f"model.e0_eV: no reference energy for {missing} (species of "
                             f"the model: {symbols})")
        e0 = np.array([m.e0_eV[s] for s in symbols])
    model.set_reference_energies(e0)
    fit_statistics(model, train)
    return model


class TrainLog:
    """Validation rows to a CSV file and a console table (main rank only).

    ``keep_until``: on resume, rows of the old log after this step are dropped (they were
    written after the checkpoint the run resumes from)."""

    def __init__(self, path: Path, stream, keep_until: int | None = None, write=print):
        self.path, self.stream, self.write_line = path, stream, write
        keys = [c[0] for c in LOG_COLUMNS]
        if keep_until is not None and path.exists():
            with open(path, newline="", encoding="utf-8") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= keep_until]
            write_atomic(path, lambda tmp: _write_csv(tmp, keys, rows))
        else:
            write_atomic(path, lambda tmp: _write_csv(tmp, keys, []))
        if stream is not None:
            self.write_line(" ".join(f"{h:>10}" for _, h, _, _ in LOG_COLUMNS))
            self.write_line(" ".join(f"{u:>10}" for _, _, u, _ in LOG_COLUMNS))

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow([_csv_value(row.get(k)) for k, *_ in LOG_COLUMNS])
        if self.stream is not None:
            self.write_line(" ".join(
                f"{'-':>10}" if row.get(k) is None or (isinstance(row[k], float)
                                                       and math.isnan(row[k]))
                else f"{row[k]:>10{fmt}}" for k, _, _, fmt in LOG_COLUMNS))


def _write_csv(path, keys, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(keys)
        for r in rows:
            w.writerow([r.get(k, "") for k in keys])


def _csv_value(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return repr(v) if isinstance(v, float) else v


def parity_panels(preds: dict[str, Predictions]):
    from ..viz.parity import ParityPanel

    gpa = 1 / ase.units.GPa
    return [
        ParityPanel("energy", "eV/atom", {k: (p.energy_ref, p.energy) for k, p in preds.items()},
                    "meV/atom", 1e3),
        ParityPanel("force components", "eV/Å",
                    {k: (p.forces_ref, p.forces) for k, p in preds.items()}, "meV/Å", 1e3),
        ParityPanel("stress components", "GPa",
                    {k: (p.stress_ref * gpa, p.stress * gpa) for k, p in preds.items()}, "GPa"),
    ]


def _write_results(out: Path, preds: dict[str, Predictions], extra: dict, title: str) -> dict:
    from ..viz.parity import plot_parity

    metrics = {name: errors(p) for name, p in preds.items()}
    report = {**metrics, **extra}
    write_atomic(out / TRAIN_METRICS_NAME,
                 lambda tmp: tmp.write_text(json.dumps(report, indent=2), encoding="utf-8"))
    plot_parity(parity_panels(preds), out / PARITY_NAME, title=title)
    return metrics


def run_training(cfg: TrainConfig, config_path, out: Path, device, *, overwrite=False,
                 resume=None, until_step: int | None = None, dist: Distributed | None = None,
                 stream=None) -> dict:
    """Train as ``cfg`` says and write the outputs to ``out``; returns the metrics.

    ``resume``: a checkpoint to continue from; ``until_step``: stop at this step (the
    learning-rate schedule still spans ``training.steps``); ``stream``: where the main rank
    prints (default stdout)."""
    main = dist is None or dist.is_main
    stream = (stream or sys.stdout) if main else None
    resume = Path(resume) if resume is not None else None
    if resume is not None and not resume.is_file():
        raise InputError(f"{resume}: checkpoint not found")
    rundir = RunDirectory(out, "train", resume_option="--resume")
    if resume is None:
        rundir.check(TRAIN_OUTPUTS, overwrite=overwrite)
    species = species_numbers(cfg)
    frames = load_frames(data_files(cfg, config_path), cfg.data.index, species)
    if species is None:
        species = sorted({int(z) for f in frames for z in f.atoms.numbers})
    sp = cfg.data.split
    train, valid, test = split(frames, (sp.train, sp.valid, sp.test), seed=cfg.seed)
    if not train:
        raise InputError(f"{config_path}: data.split: no training frames out of "
                         f"{len(frames)}")
    train_set = FrameSet(train, species, cfg.model.r_cut_A, device)
    model = build_model(cfg, train_set)
    trainer = Trainer(model, train_set, valid, cfg.settings(), device, dist)
    if resume is not None:
        trainer.load_checkpoint(resume)
    s = trainer.settings
    stop = s.total_steps if until_step is None else min(until_step, s.total_steps)
    if main:
        rundir.start(new_run_id(), TRAIN_OUTPUTS, overwrite=overwrite and resume is None)
        if resume is None or not (out / CONFIG_COPY_NAME).exists():
            write_atomic(out / CONFIG_COPY_NAME, lambda tmp: shutil.copyfile(config_path, tmp))
        n_params = sum(p.numel() for p in model.parameters())
        print(f"data: {summary(frames)}\nsplit: {len(train)} train, {len(valid)} valid, "
              f"{len(test)} test frames (seed {cfg.seed})\nmodel: DeepPot-SE, {n_params} "
              f"parameters, r_cut {model.cutoff:g} Å, neighbor_norm {model.neighbor_norm:g}, "
              f"E0 {np.round(model.e0.cpu().numpy(), 6).tolist()} eV; device {device}"
              + (f", {dist.world_size} processes" if dist else "")
              + (f"; resumed at step {trainer.step}" if resume else ""), file=stream,
              flush=True)
    bar = None
    if main and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=stop, initial=trainer.step, unit="step", dynamic_ncols=True)
    log = TrainLog(out / TRAIN_LOG_NAME, stream, trainer.step if resume else None,
                   write=bar.write if bar is not None else
                   (lambda line: print(line, file=stream, flush=True))) if main else None
    every = cfg.training.checkpoint_every
    start = time.perf_counter()
    while trainer.step < stop and not trainer.stopped:
        trainer.train_step()
        if bar is not None:
            bar.update(1)
        if trainer.step % s.valid_every == 0 or trainer.step == s.total_steps:
            row = trainer.validate()
            row["time_s"] = time.perf_counter() - start
            if log is not None:
                log.write(row)
        if main and (trainer.step % every == 0 or trainer.step == stop or trainer.stopped):
            trainer.save_checkpoint(out / CHECKPOINT_NAME)
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    best = trainer.best_model()
    preds = {name: trainer.predict(data, best) for name, data in
             (("train", train_set), ("valid", trainer.valid_data), ("test", test))
             if len(data)}
    extra = {"run": {"steps": trainer.step, "total_steps": s.total_steps,
                     "best_step": trainer.best_step if trainer.best_step >= 0 else None,
                     "stopped_early": trainer.stopped,
                     "train_seconds": seconds, "device": str(device),
                     "processes": dist.world_size if dist else 1}}
    if not main:
        return {name: errors(p) for name, p in preds.items()}
    save_model(best, out / MODEL_NAME)
    metrics = _write_results(out, preds, extra, f"DeepPot-SE, step {trainer.step}")
    why = "early stop, " if trainer.stopped else ""
    kept = (f"best validation at step {trainer.best_step}" if trainer.best_step >= 0 else
            "no validation frames: final EMA weights")
    print(f"\n{format_table(metrics)}\nhayabusa train: {trainer.step} steps ({why}{kept}) "
          f"in {seconds:.1f} s; outputs in "
          f"{out}/ ({', '.join(n for n in TRAIN_OUTPUTS if (out / n).exists())})",
          file=stream, flush=True)
    return metrics


def run_test(model_path, data_paths, out: Path, device, *, overwrite=False,
             batch_atoms: int = 1024, stream=None) -> dict:
    """Metrics and parity plot of a model file on labelled frames."""
    rundir = RunDirectory(out, "test")
    rundir.check((TRAIN_METRICS_NAME, PARITY_NAME), overwrite=overwrite)
    model = load_core(model_path, device)
    frames = load_frames(data_paths, species=model.species)
    data = FrameSet(frames, model.species, model.cutoff, device)
    pred = predict(model, data, range(len(data)), batch_atoms)
    rundir.start(new_run_id(), (TRAIN_METRICS_NAME, PARITY_NAME), overwrite=overwrite)
    extra = {"model": str(model_path), "data": [str(p) for p in data_paths]}
    metrics = _write_results(out, {"test": pred}, extra, f"{model_path}")
    print(f"data: {summary(frames)}\n{format_table(metrics)}\nhayabusa test: outputs in "
          f"{out}/ ({TRAIN_METRICS_NAME}, {PARITY_NAME})", file=stream or sys.stdout, flush=True)
    return metrics
