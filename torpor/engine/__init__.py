"""Checkpoint/restore of a process tree over ptrace, /proc, pidfd, process_vm_* and clone3.

Knows nothing of OCI or containers: a caller hands it a root PID (and, for containers, a
freezer cgroup) and an image path.
"""
