"""``python -m hayabusa`` runs the command line (see ``hayabusa.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
