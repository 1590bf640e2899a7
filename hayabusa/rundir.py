"""Run directories: the names of what hayabusa writes there, defined once, and the guards
around writing into them.

A run directory holds a manifest, ``.hayabusa-run.json``: the run id, the command, the files
hayabusa writes there (by path) and the folders it created with the patterns of the files it
writes into them. ``RunDirectory``:
- ``inside(path, key)``: a configured output path, which must lie inside the directory (no
  absolute path, no ``..``, not ``.`` or the directory itself) — an InputError naming the key;
- ``check(...)``: before anything is written, refuses a folder that holds results of an
  earlier run unless ``overwrite`` is given, and a restart into a folder whose results belong
  to another run (another run id);
- ``start(...)``: after every check passed, removes the earlier results that the old manifest
  lists (files only; a folder hayabusa created goes only once it is empty — never a folder it
  did not create, never anything else in the directory), creates the directory and writes the
  new manifest. Folders written before manifests existed are judged by the known names.
"""

from __future__ import annotations

import fnmatch
import json
import os
import uuid
from pathlib import Path, PurePosixPath

from .errors import InputError
from .files import write_atomic

MANIFEST_NAME = ".hayabusa-run.json"
MANIFEST_FORMAT = "hayabusa-run-1"
LOG_NAME = "log.hayabusa"
CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_COPY_NAME = "config.yaml"
TRAJECTORY_NAME = "traj.h5"  # a study run's trajectory
START_NAME = "start.extxyz"
RUN_JSON_NAME = "run.json"
CHECKPOINT_DIR = "checkpoints"
ANALYSIS_NAME = "analysis.json"
DENSITY_NAME = "li_density.npz"
REPORT_NAME = "report.html"
VIEW_NAME = "view.html"
PLOTS_DIR = "plots"
METRICS_NAME = "model_metrics.json"  # a study's copy of its model's test metrics
PARITY_NAME = "parity.png"
MODEL_NAME = "model.pt"  # hayabusa train's outputs
TRAIN_LOG_NAME = "train.csv"
TRAIN_METRICS_NAME = "metrics.json"
#: what a study run directory ``<system>-<T>K/`` holds
STUDY_RUN_FILES = (LOG_NAME, TRAJECTORY_NAME, START_NAME, RUN_JSON_NAME, DENSITY_NAME)


def new_run_id() -> str:
    """A new run id: 12 hex digits, random."""
    return uuid.uuid4().hex[:12]


class RunDirectory:
    """The run directory ``root`` of ``command`` (e.g. "md", "study"); ``noun`` names what
    its results are of in messages ("run", "study"); ``resume_option`` the command's option
    that continues from the directory's checkpoint ("--restart", "--resume"), if it has one."""

    def __init__(self, root, command: str, noun: str = "run", resume_option: str | None = None):
        self.root = Path(root)
        self.command = command
        self.noun = noun
        self.resume_option = resume_option
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{self.root}: exists and is not a directory")

    # ------------------------------------------------------------------ paths
    def inside(self, path: str, key: str) -> Path:
        """``root / path`` for a relative ``path`` that stays inside the directory."""
        text = str(path)
        parts = PurePosixPath(text.replace("\\", "/")).parts
        if not text or os.path.isabs(text) or ".." in parts or \
                os.path.normpath(text) in (".", "") or text.endswith(("/", "\\")):
            raise InputError(f"{key}: {text!r} must be a file name inside the output "
                             f"directory (no absolute path, no '..', not '.')")
        return self.root / os.path.normpath(text)

    # ---------------------------------------------------------------- manifest
    def manifest(self) -> dict | None:
        """The manifest of what is there (None: no manifest)."""
        path = self.root / MANIFEST_NAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: unreadable run manifest ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise InputError(f"{path}: not a hayabusa run manifest")
        return data

    def _earlier(self) -> dict | None:
        """The manifest of an earlier run of the same command (another command's results are
        not this run's to replace: only the names this run writes are)."""
        old = self.manifest()
        return old if old is not None and old.get("command") == self.command else None

    def results(self, files=(), dirs: dict | None = None) -> list[Path]:
        """The results of an earlier run that exist: what the manifest of an earlier run of
        this command lists, else ``files`` and the files matching ``dirs``' patterns."""
        old = self._earlier()
        if old is not None:
            files, dirs = old.get("files", []), old.get("dirs", {})
        found = [self.root / f for f in files if (self.root / f).is_file()]
        for folder, patterns in (dirs or {}).items():
            found.extend(self._matching(self.root / folder, patterns))
        return found

    @staticmethod
    def _matching(folder: Path, patterns) -> list[Path]:
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_file()
                      and any(fnmatch.fnmatch(p.name, pat) for pat in patterns))

    # ---------------------------------------------------------------- guards
    def check(self, files, dirs: dict | None = None, overwrite: bool = False,
              restart_run_id: str | None = None) -> None:
        """Refuse to write over results of an earlier run (InputError naming the folder)
        unless ``overwrite``; for a restart (``restart_run_id``), refuse results that belong
        to another run. ``files``/``dirs``: what this run writes (relative paths; folder →
        patterns)."""
        old = self.results(files, dirs)
        if not old:
            return
        names = ", ".join(str(p.relative_to(self.root)) for p in old[:4]) + \
            (", …" if len(old) > 4 else "")
        if restart_run_id is not None:
            manifest = self._earlier()
            theirs = manifest.get("run_id") if manifest else None
            if theirs != restart_run_id:
                what = f"run {theirs}" if theirs else "a run hayabusa cannot identify"
                raise InputError(f"{self.root} holds results of {what} ({names}), not of the "
                                 f"checkpoint's run {restart_run_id}; restart into its own "
                                 f"folder or choose another --output")
            return
        if not overwrite:
            checkpoint = self.root / CHECKPOINT_NAME
            resume = f", {self.resume_option} {checkpoint} to continue" \
                if self.resume_option is not None and checkpoint in old else ""
            raise InputError(f"{self.root} holds results of an earlier {self.noun} ({names}); "
                             f"pass --overwrite to replace them{resume} or --output to choose "
                             f"another directory")

    def start(self, run_id: str, files, dirs: dict | None = None,
              overwrite: bool = False) -> None:
        """After ``check``: remove the earlier results (``overwrite``), create the directory and
        record this run's manifest."""
        dirs = dict(dirs or {})
        if overwrite:
            old = self._earlier()
            created = set(old.get("dirs", {})) if old is not None else set(dirs)
            for path in self.results(files, dirs):
                path.unlink()
            for folder in sorted(created, key=len, reverse=True):
                target = self.root / folder
                if target.is_dir() and not any(target.iterdir()):
                    target.rmdir()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{self.root}: cannot create the output directory "
                             f"({exc.strerror})") from None
        previous = self._earlier() if not overwrite else None
        if previous is not None:  # a restart: keep what the run wrote before
            files = sorted(set(previous.get("files", [])) | {str(f) for f in files})
            dirs = {**previous.get("dirs", {}), **dirs}
        self._write_manifest(run_id, [str(f) for f in files], dirs)

    def _write_manifest(self, run_id: str, files: list[str], dirs: dict) -> None:
        data = {"format": MANIFEST_FORMAT, "run_id": run_id, "command": self.command,
                "files": files, "dirs": dirs}
        text = json.dumps(data, indent=1)
        write_atomic(self.root / MANIFEST_NAME, lambda tmp: tmp.write_text(text, "utf-8"))
