"""Output files: atomic writes (a temporary file beside the target, then a rename, so a reader
or a crash never sees a half-written result); checks that catch truncated or damaged input
files (text structure files cut off, ``torch.save`` archives). Output folders are
``hayabusa.rundir``'s."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

from .errors import InputError, first_line


def write_atomic(path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)``, then move the temporary file onto ``path`` (a folder there is
    an InputError; a failed write leaves no temporary file)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory; expected a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def check_text_ends(path) -> None:
    """InputError if the .xyz/.extxyz file ``path`` does not end with a newline: a file cut off
    inside its last line would read as fewer frames or shorter numbers, without an error."""
    path = Path(path)
    if path.suffix.lower() not in (".xyz", ".extxyz") or not path.is_file():
        return
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(size - 1, 0))
        last = fh.read(1)
    if size and last != b"\n":
        raise InputError(f"{path}: ends inside a line, so it looks truncated (if it is "
                         "complete, end it with a newline)")


def load_torch(path, what: str, error: type[Exception] = InputError, map_location="cpu"):
    """The object ``torch.save`` wrote to ``path`` (loaded with ``weights_only``), after the
    CRC-32 of every member of its zip archive is checked: ``torch.load`` does not check them,
    so damaged tensor bytes would load as wrong numbers. A missing, truncated or damaged file is
    ``error`` with one line naming ``path`` as ``what`` (e.g. "checkpoint")."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as exc:  # BadZipFile, OSError, zlib.error…: the archive itself is damaged
        raise error(f"{path}: not a readable {what}, truncated or damaged "
                    f"({first_line(exc)})") from None
    if damaged is not None:
        raise error(f"{path}: damaged {what} (checksum mismatch in {damaged})")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # the unpickler raises many kinds for content it cannot read
        raise error(f"{path}: not a readable {what} ({first_line(exc)})") from None
