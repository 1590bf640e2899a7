"""Training potentials on labelled frames: data, losses, trainer, metrics."""

from .data import Frame, fit_reference_energies, load_frames, split, summary
from .metrics import Predictions, errors
from .trainer import FrameSet, Trainer, TrainSettings, fit_statistics

__all__ = ["Frame", "FrameSet", "Predictions", "TrainSettings", "Trainer", "errors",
           "fit_reference_energies", "fit_statistics", "load_frames", "split", "summary"]
