"""`python -m tfjit ...` is the `tfjit` command."""
import sys

from .cli import main

sys.exit(main())
