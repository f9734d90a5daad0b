"""``python -m flsim``: the same as the ``flsim`` command."""

import sys

from flsim.cli import main

sys.exit(main())
