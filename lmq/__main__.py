"""``python -m lmq`` is the ``lmq`` command."""

import sys

from lmq.cli import main

sys.exit(main())
