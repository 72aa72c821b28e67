"""`python -m nnspec ...`: the same command as the `nnspec` console script."""
import sys

from nnspec.cli import main

sys.exit(main())
