"""Entry point of ``python -m interpret``."""

import sys

try:  # Ctrl-C while the libraries load: one line, as everywhere else
    from interpret.cli import main
except KeyboardInterrupt:
    print("python -m interpret: interrupted; nothing written", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
