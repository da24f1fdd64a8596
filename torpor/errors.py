"""Errors shared by every layer.

A TorporError carries a one-line message meant for the user; the CLI prints it and exits
non-zero. Anything else that escapes is a bug and is shown with its traceback under --debug.
"""


class TorporError(Exception):
    """A failure the user can act on; str(err) is a single line."""

    exit_code = 1


class NotFound(TorporError):
    """An object named by the user (container, image, checkpoint, pid) does not exist."""


class AlreadyExists(TorporError):
    """An object the user asked to create exists already (container id, image path, pid)."""


class InvalidState(TorporError):
    """The operation does not fit the object's current state (e.g. start of a running container)."""


class ImageError(TorporError):
    """A checkpoint image is missing, incomplete, damaged, foreign or incompatible."""
