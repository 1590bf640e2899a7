"""hayabusa: GPU-resident molecular dynamics for machine-learning interatomic potentials."""

__version__ = "0.1.0"

from .calculator import HayabusaCalculator  # noqa: E402
from .errors import HayabusaError, InputError, ModelError, SimulationError  # noqa: E402
from .models import load_model  # noqa: E402
from .neighbors import NeighborList  # noqa: E402
from .state import State  # noqa: E402

__all__ = ["HayabusaCalculator", "HayabusaError", "InputError", "ModelError", "NeighborList",
           "SimulationError", "State", "__version__", "load_model"]
