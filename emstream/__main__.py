"""``python -m emstream``: the ``emstream`` command."""

import sys

from .cli import main

sys.exit(main())
