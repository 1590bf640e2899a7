"""Atomic file writes: write to a temporary file beside the target, then rename, so a reader
or a crash never sees a half-written result."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomic(path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)``, then move the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
    return path
