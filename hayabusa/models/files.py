"""Model files: one file with weights, architecture config, species, cutoff, units, package
version and a checksum. Loading a corrupt or incompatible file is a ModelError."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..errors import ModelError
from ..files import write_atomic

FORMAT = "hayabusa-model-1"


def _classes() -> dict:
    from .deeppot import DeepPotSE

    return {"DeepPotSE": DeepPotSE}


def _checksum(config: dict, weights: dict) -> str:
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name in sorted(weights):
        h.update(name.encode())
        h.update(weights[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def save_model(model, path) -> Path:
    """Write ``model`` atomically (temporary file + rename)."""
    from .. import __version__

    path = Path(path)
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": __version__, "class": type(model).__name__,
               "config": model.config, "units": "metal", "cutoff": model.cutoff,
               "species": list(model.species), "weights": weights,
               "checksum": _checksum(model.config, weights)}
    return write_atomic(path, lambda tmp: torch.save(payload, tmp))


def load_model(path, device="cpu"):
    """The Potential stored in ``path`` (on ``device``, in eval mode)."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found") from None
    except Exception as exc:
        raise ModelError(f"{path}: not a readable model file ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path}: not a hayabusa model file (expected format {FORMAT})")
    cls = _classes().get(payload.get("class"))
    if cls is None:
        raise ModelError(f"{path}: unknown model class {payload.get('class')!r} (written by "
                         f"hayabusa {payload.get('version')})")
    if _checksum(payload["config"], payload["weights"]) != payload["checksum"]:
        raise ModelError(f"{path}: checksum mismatch — the file is corrupt")
    model = cls(**payload["config"])
    try:
        model.load_state_dict(payload["weights"])
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit the stored architecture "
                         f"({str(exc).splitlines()[0]})") from None
    return model.to(device).eval()
