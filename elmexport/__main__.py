"""`python -m elmexport ...` runs the command line, for environments where the entry point is not on PATH."""

import sys

from .cli import main

sys.exit(main())
