"""Trainable models: cores (tensors in, per-atom energies out) of registered kinds, the
Potential adapter, model files and export."""

from .deeppot import DeepPotSE
from .files import load_core, load_model, save_model
from .potential import ModelPotential
from .registry import get_kind, kinds

__all__ = ["DeepPotSE", "ModelPotential", "get_kind", "kinds", "load_core", "load_model",
           "save_model"]
