"""Training potentials on labelled frames: data, losses, trainer, metrics."""

from .data import Frame, fit_reference_energies, load_frames, split, summary
from .trainer import Trainer, TrainSettings, set_environment_scales

__all__ = ["Frame", "TrainSettings", "Trainer", "fit_reference_energies", "load_frames",
           "set_environment_scales", "split", "summary"]
