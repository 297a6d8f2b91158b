"""``python -m cloudroi.cli``: the ``cloudroi`` command."""

import sys

from . import main

sys.exit(main())
