"""Benchmarks (not timed tests): side-by-side measurements in one run, with the machine."""
