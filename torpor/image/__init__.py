"""The on-disk checkpoint image: typed records, page files, integrity. Knows nothing of ptrace."""
