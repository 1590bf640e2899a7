"""Training potentials on labelled frames: data, losses, trainer, metrics."""

from .data import Frame, fit_reference_energies, load_frames, split, summary
from .metrics import Predictions, errors
from .trainer import FrameSet, Trainer, TrainSettings, mean_neighbors, set_environment_scales

__all__ = ["Frame", "FrameSet", "Predictions", "TrainSettings", "Trainer", "errors",
           "fit_reference_energies", "load_frames", "mean_neighbors", "set_environment_scales",
           "split", "summary"]
