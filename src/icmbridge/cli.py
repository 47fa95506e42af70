"""``python -m icmbridge.cli`` (and ``torchrun -m icmbridge.cli train``): the ``icmbridge``
command, which lives in :mod:`icmbridge.commands`."""

import sys

from icmbridge.commands import main

if __name__ == "__main__":
    sys.exit(main())
