"""Developer tools that run without the package's heavy dependencies (standard library only)."""
