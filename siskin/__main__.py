"""``python -m siskin``: the same as the ``siskin`` command."""

import sys

from siskin.cli import main

sys.exit(main())
