"""`python -m spqr_fast.cli`."""

from . import main

main()
