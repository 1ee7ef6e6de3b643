"""``python -m harness.cli``: the ``menagerie`` command."""

import sys

from harness.cli import main

sys.exit(main())
