"""``python -m cutover.cli``, as the tests and the bench run it."""

import sys

from cutover.cli import main

sys.exit(main())
