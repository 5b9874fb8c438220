"""``python -m chaosproxy``: the same program as the ``chaosproxy`` command."""

from __future__ import annotations

import sys

from chaosproxy.cli import main

if __name__ == "__main__":
    sys.exit(main())
