"""python -m stability: the same command line as the `stability` script."""

import sys

from stability.app.cli import main

sys.exit(main())
