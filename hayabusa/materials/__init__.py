"""LLZO structure builders (cubic, tetragonal, grain-boundary bicrystals) and their checks."""

from .checks import FORMAL_CHARGES, check_structure
from .grain_boundary import SYMMETRIC_TILT, llzo_grain_boundary
from .llzo import cubic_llzo, tetragonal_llzo

__all__ = ["FORMAL_CHARGES", "SYMMETRIC_TILT", "check_structure", "cubic_llzo",
           "llzo_grain_boundary", "tetragonal_llzo"]
