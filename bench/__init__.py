"""torpor benchmark suite: `python3 -m bench [NAME ...] [--runs N]` (see docs/performance.md)."""
