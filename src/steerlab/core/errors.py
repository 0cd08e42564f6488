"""Errors a user can act on. The CLI prints them as one line on stderr and exits 2."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input, a refused action or a file in the way: the message says what and how to fix it."""


class CheckpointError(UserError):
    """A checkpoint folder is missing, incomplete or corrupt."""


class OutputExistsError(UserError):
    """An output path holds something this command did not write."""


class LockedError(UserError):
    """Another live process is writing the same folder."""
