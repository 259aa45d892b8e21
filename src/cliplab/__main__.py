"""`python -m cliplab ...` (and `torchrun -m cliplab train ...`): the command line."""

import sys

from .cli import main

sys.exit(main())
