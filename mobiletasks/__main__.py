"""``python -m mobiletasks`` is the ``mobiletasks`` command."""

import sys

from .cli import main

sys.exit(main())
