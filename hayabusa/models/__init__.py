"""Trainable potentials and model files."""

from .deeppot import DeepPotSE
from .files import load_model, save_model

__all__ = ["DeepPotSE", "load_model", "save_model"]
