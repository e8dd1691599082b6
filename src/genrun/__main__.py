"""`python -m genrun` is the same command as `genrun`."""

import sys

from genrun.cli import entry

if __name__ == "__main__":
    sys.exit(entry())
