"""Errors a user can cause. The CLI prints them as one line and exits with code 2, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad file, bad column, bad recipe key, CUDA-only option on CPU).

    The message must name the file/row/key and say what to do.
    """

    exit_code = 2
