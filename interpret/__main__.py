"""Entry point of ``python -m interpret``."""

import sys

from interpret.cli import main

sys.exit(main())
