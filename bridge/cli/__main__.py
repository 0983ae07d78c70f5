"""``python -m bridge.cli``: the ``greenlight`` command."""

import sys

from . import main

sys.exit(main())
