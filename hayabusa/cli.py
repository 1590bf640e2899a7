"""The ``hayabusa`` command: a parser and the dispatch. Every subcommand (md, study, bench,
train, test, label, export, analyze, report) lives beside the code it drives and registers
itself with ``add_parser(sub)``; see ``COMMAND_MODULES``. Any ``HayabusaError`` is printed as
one line ``error: …`` on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import HayabusaError

COMMAND_MODULES = ("workflows.md", "workflows.study", "bench.commands", "train.commands",
                   "train.label", "models.commands", "analysis.run", "viz.report")


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except HayabusaError as exc:
        message = " ".join(str(exc).split("\n")).strip() or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hayabusa", description="GPU-resident molecular dynamics for machine-learning "
        "interatomic potentials.")
    parser.add_argument("--version", action="version", version=f"hayabusa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(f".{module}", __package__).add_parser(sub)
    return parser
