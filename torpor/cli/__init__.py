"""Command-line interface: argument parsing and printing only.

Every command lives in its own module under cli/commands/ and is imported only when it is
called, so that `torpor state` (called by containerd for every operation) starts fast.
"""
