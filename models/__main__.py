"""`python -m models`: the registry's command line (see models/registry/cli.py)."""

import sys

from models.registry.cli import main

if __name__ == "__main__":
    sys.exit(main())
