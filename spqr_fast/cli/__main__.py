"""`python -m spqr_fast.cli`."""

from . import main

main(prog_name="spqr-fast")
