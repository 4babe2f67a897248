"""``python -m tests.chaos``: the chaos run (:mod:`tests.chaos.run`)."""

import sys

from tests.chaos.run import main

sys.exit(main())
