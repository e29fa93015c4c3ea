"""Real data sets that install from PyPI (their data is never committed here)."""
