"""Executors (this process, or Ray actors) and shards of the plan."""
