"""``python -m hwquant``: the command line (:func:`hwquant.cli.main`)."""

import sys

from .cli import main

sys.exit(main())
