"""Exceptions. Bad user input is an InputError; the CLI prints it in one line and exits 2."""


class HayabusaError(Exception):
    """Base class of every error hayabusa raises on purpose."""


class InputError(HayabusaError, ValueError):
    """Bad user input: names the file, key, system or atom and what was expected."""


class SimulationError(HayabusaError, RuntimeError):
    """A simulation blew up (NaN, energy jump, lost atoms); names the step and system."""


class ModelError(HayabusaError):
    """A model file is corrupt or incompatible."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none), for the
    one-line errors of files a library could not read."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
