"""Pure scoring math (no I/O): the SPQR axes, FID, bootstrap intervals."""
