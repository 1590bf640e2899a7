"""Output files: atomic writes (a temporary file beside the target, then a rename, so a reader
or a crash never sees a half-written result) and output folders."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import InputError


def write_atomic(path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)``, then move the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def prepare_output(out, old: Iterable[Path] = ()) -> Path:
    """Remove ``old`` (files or folders of an earlier run the user agreed to replace) and
    create the output folder ``out``; a folder that cannot be made is an InputError."""
    out = Path(out)
    for p in old:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the output directory ({exc.strerror})") \
            from None
    return out
