"""How much a command prints: ``--quiet`` / ``--verbose`` and the tqdm progress bar on stderr.

Shared by the ``turbsim`` and ``fbseg`` commands. The bar is drawn on stderr (stdout keeps the
result a script may parse); messages printed while it is drawn go above it, not through it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import click

__all__ = ["QUIET", "NORMAL", "VERBOSE", "Reporter", "show_library_notices", "verbosity_options"]

#: Verbosity levels of :class:`Reporter` (``--quiet``, neither flag, ``--verbose``).
QUIET, NORMAL, VERBOSE = -1, 0, 1


def verbosity_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--quiet`` and ``--verbose`` to a click command (parameters ``quiet``, ``verbose``)."""
    command = click.option(
        "--verbose", "-v", is_flag=True, help="Also print the resolved settings and details."
    )(command)
    return click.option(
        "--quiet",
        "-q",
        is_flag=True,
        help="No progress bar, no messages: results, warnings and errors only.",
    )(command)


def verbosity(quiet: bool, verbose: bool) -> int:
    """The level of ``--quiet`` / ``--verbose``; both together is a usage error (exit 2)."""
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose exclude each other")
    return QUIET if quiet else VERBOSE if verbose else NORMAL


class Reporter:
    """Messages and an optional progress bar on stderr, as the verbosity says.

    Args:
        level: :data:`QUIET` (nothing but :meth:`result`), :data:`NORMAL` (messages and the bar)
            or :data:`VERBOSE` (also :meth:`detail`).
        desc: the bar's label, e.g. ``"train"``.
        unit: what the bar counts, e.g. ``"step"`` or ``"img"``.
    """

    def __init__(self, level: int, desc: str, unit: str) -> None:
        self.level = level
        self.desc = desc
        self.unit = unit
        self._bar: Any = None

    def __enter__(self) -> Reporter:
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        self.close()

    def say(self, message: str) -> None:
        """A message (not when quiet), printed above the bar if one is drawn."""
        if self.level > QUIET:
            self._write(message)

    def detail(self, message: str) -> None:
        """A message shown only with ``--verbose``."""
        if self.level >= VERBOSE:
            self._write(message)

    def progress(self, done: int, total: int) -> None:
        """Move the bar to ``done`` of ``total`` (drawn on the first call; none when quiet)."""
        if self.level <= QUIET:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=done, unit=self.unit, desc=self.desc, dynamic_ncols=True,
                file=sys.stderr,
            )  # fmt: skip
            return
        self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        """Remove the bar (idempotent)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _write(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            click.echo(message, err=True)


#: The reporters of the commands running now (innermost last): library notices go to it.
_ACTIVE: list[Reporter] = []


class _Notices(logging.Handler):
    """Prints the INFO notices of the ``turbsim`` and ``feedbackseg`` loggers as plain lines:
    through the active :class:`Reporter` (so ``--quiet`` drops them and the bar stays whole),
    else on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if _ACTIVE:
            _ACTIVE[-1].say(message)
        else:
            click.echo(message, err=True)


def show_library_notices() -> None:
    """Route the libraries' INFO log records (e.g. "integrating the correlation table for
    rho = ...") to the command's output (idempotent; called by both command groups)."""
    for name in ("turbsim", "feedbackseg"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _Notices) for h in logger.handlers):
            logger.addHandler(_Notices(logging.INFO))
        logger.setLevel(logging.INFO)
        logger.propagate = False
