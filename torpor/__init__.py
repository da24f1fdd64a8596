"""torpor: a container runtime with checkpoint/restore, written in Python."""

__version__ = "0.1.0"
OCI_VERSION = "1.0.2"
