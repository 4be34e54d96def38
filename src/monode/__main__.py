"""`python -m monode ...`: the command line (torchrun starts it this way: `torchrun ... -m monode train ...`)."""

import sys

from .cli import main

sys.exit(main())
