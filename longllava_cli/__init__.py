"""longllava command line (Typer)."""
