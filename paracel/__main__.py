"""``python -m paracel`` is ``python -m paracel.run``."""

import sys

from paracel.run import main

sys.exit(main())
