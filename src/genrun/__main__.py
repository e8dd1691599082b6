"""`python -m genrun` is the same command as `genrun`."""

import sys

from genrun.cli import main

if __name__ == "__main__":
    sys.exit(main())
