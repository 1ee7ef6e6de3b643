"""``python -m menagerie.harness.cli``: the ``menagerie`` command."""

import sys

from menagerie.harness.cli import main

sys.exit(main())
