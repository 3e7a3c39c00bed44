"""Paths the user gives ``fbseg``: symlink loops called by their name, and OS errors that name
the file they are about.

A link that leads back to itself (``ln -s loop loop``, or a cycle of links) makes ``os.stat``
fail with ELOOP; ``Path.exists`` and ``Path.is_file`` then answer False and ``Path.resolve``
raises RuntimeError (Python 3.11). The helpers here turn both into one line saying "symlink
loop". A write that fails on a full disk raises an OSError without ``filename`` (the error comes
from ``write``, not ``open``); :func:`named_os_errors` gives it the path being written, so the
command line can name it.

No torch at import time.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "SYMLINK_LOOP",
    "absolute_path",
    "is_symlink_loop",
    "named_os_errors",
    "not_found",
]

#: The words of every message about a symlink loop.
SYMLINK_LOOP = "symlink loop (a link that leads back to itself)"


def is_symlink_loop(path: str | os.PathLike) -> bool:
    """Whether ``path`` (or a folder on the way to it) is a link that leads back to itself."""
    try:
        os.stat(path)
    except OSError as error:
        return error.errno == errno.ELOOP
    except ValueError:  # e.g. a NUL byte in the name
        return False
    return False


def not_found(path: str | os.PathLike, what: str) -> str:
    """``"PATH: no such WHAT"``, or ``"PATH: symlink loop (...)"`` when that is why."""
    if is_symlink_loop(path):
        return f"{path}: {SYMLINK_LOOP}"
    return f"{path}: no such {what}"


def absolute_path(value: str | os.PathLike) -> str:
    """``value`` made absolute with ``~`` expanded and links resolved (``Path.resolve``).

    Raises:
        ValueError: ``"VALUE: symlink loop (...)"``, when a link on the way leads back to
            itself.
    """
    try:
        return str(Path(value).expanduser().resolve())
    except (RuntimeError, OSError) as error:  # RuntimeError up to 3.12, OSError from 3.13
        if isinstance(error, OSError) and error.errno != errno.ELOOP:
            raise
        raise ValueError(f"{value}: {SYMLINK_LOOP}") from None


@contextlib.contextmanager
def named_os_errors(path: str | os.PathLike) -> Iterator[None]:
    """Give an OSError raised meanwhile without a file name the name ``path``.

    A full disk fails in ``write`` (or in the flush of ``close``), whose OSError names no file;
    re-raised here as ``OSError(errno, strerror, path)`` of the same class, so that the
    command's one line names what could not be written. Errors that name a file pass as they
    are.
    """
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise type(error)(error.errno, error.strerror or str(error), str(path)) from None
