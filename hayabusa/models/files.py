"""Model files: one file with the model kind (``models.registry``), weights, architecture
config, species, cutoff, units, package version, metadata (e.g. what the training labels are;
``model.metadata`` after loading) and a checksum. Loading a corrupt or incompatible file is a
ModelError. ``load_model`` gives the model as a Potential (``ModelPotential``); ``load_core``
the core itself."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .. import __version__
from ..errors import InputError, ModelError, first_line
from ..files import load_torch, write_atomic

FORMAT = "hayabusa-model-1"


def _kind_of(payload: dict):
    """The registered kind a file names ("kind"; files before the registry name the class)."""
    from .registry import kinds

    name = payload.get("kind")
    for kind in kinds().values():
        if kind.name == name or (name is None and kind.core.__name__ == payload.get("class")):
            return kind
    return None


def _checksum(config: dict, weights: dict, metadata: dict | None = None) -> str:
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    if metadata:  # files without metadata keep the checksum they always had
        h.update(json.dumps(metadata, sort_keys=True).encode())
    for name in sorted(weights):
        h.update(name.encode())
        h.update(weights[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def save_model(model, path, metadata: dict | None = None) -> Path:
    """Write ``model`` atomically (temporary file + rename). ``metadata``: a JSON-serialisable
    dict (e.g. what the training labels are), covered by the checksum; default the model's
    own ``metadata`` attribute, if any."""
    from .. import __version__

    path = Path(path)
    model = getattr(model, "model", model)  # a ModelPotential stores its core
    if metadata is None:
        metadata = getattr(model, "metadata", None) or {}
    metadata = json.loads(json.dumps(metadata))  # plain JSON types, or TypeError now
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": __version__, "kind": model.kind,
               "class": type(model).__name__, "config": model.config, "units": "metal",
               "cutoff": model.cutoff, "species": list(model.species), "weights": weights,
               "metadata": metadata, "checksum": _checksum(model.config, weights, metadata)}
    return write_atomic(path, lambda tmp: torch.save(payload, tmp))


def load_model(path, device="cpu"):
    """The model stored in ``path`` as a Potential (on ``device``, in eval mode). A missing,
    damaged or incompatible file is a ModelError naming it."""
    from .potential import ModelPotential

    return ModelPotential(load_core(path, device))


def load_core(path, device="cpu"):
    """The model core stored in ``path`` (on ``device``, in eval mode); see ``load_model``."""
    path = Path(path)
    payload = load_torch(path, "model file", ModelError)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path}: not a hayabusa model file (expected format {FORMAT})")
    kind = _kind_of(payload)
    if kind is None:
        raise ModelError(f"{path}: unknown model kind "
                         f"{payload.get('kind', payload.get('class'))!r} (written by hayabusa "
                         f"{payload.get('version')})")
    cls = kind.core
    missing = [k for k in ("config", "weights", "checksum") if k not in payload]
    if missing:
        raise ModelError(f"{path}: incomplete model file (no {', '.join(missing)})")
    metadata = payload.get("metadata") or {}
    try:
        intact = _checksum(payload["config"], payload["weights"], metadata) == payload["checksum"]
    except (TypeError, AttributeError, ValueError):  # config, weights or metadata malformed
        intact = False
    if not intact:
        raise ModelError(f"{path}: checksum mismatch — the file is corrupt")
    try:
        model = cls(**payload["config"])
    except (TypeError, InputError) as exc:  # a config of another hayabusa version
        raise ModelError(f"{path}: the stored architecture does not fit hayabusa "
                         f"{__version__} ({first_line(exc)}; written by hayabusa "
                         f"{payload.get('version')})") from None
    try:
        missing, unexpected = model.load_state_dict(payload["weights"], strict=False)
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit the stored architecture "
                         f"({str(exc).splitlines()[0]})") from None
    missing = [k for k in missing if k not in getattr(model, "optional_state", ())]
    unexpected = [k for k in unexpected if k not in getattr(model, "retired_state", ())]
    if missing or unexpected:
        raise ModelError(f"{path}: weights do not fit the stored architecture (missing "
                         f"{missing[:3]}, unexpected {unexpected[:3]})")
    model.metadata = metadata
    return model.to(device).eval()
