"""How ``fbseg`` reports what went wrong: one ``Error: ...`` line naming the flag or the path,
and a non-zero exit, never a traceback for a user's mistake or the machine's limits.

- a bad config value: a usage error naming the flag (exit 2) when it came from the command
  line (:func:`config_error`);
- an OS error: ``PATH: cause`` (:func:`turbsim_cli.options.os_error`, shared with ``turbsim``);
- an output path that cannot be written (under a file, a symlink loop): refused before any long
  computation (:func:`check_output_place`);
- out of memory anywhere: ``out of memory (...)`` and what to try (:func:`out_of_memory`);
- Ctrl-C or SIGTERM: the one ``interrupted ...`` line and exit 128 + the signal
  (:func:`interrupted`).

The commands that compute (train, eval, study, predict) run inside :func:`reported`, which
applies the first three; the others are decorated with :func:`turbsim_cli.options.user_errors`.

torch is not imported here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from feedbackseg.config import ConfigError
from feedbackseg.errors import FbsegError
from turbsim.errors import TurbsimError

__all__ = [
    "USER_ERRORS",
    "check_output_place",
    "config_error",
    "user_error",
    "interrupted",
    "out_of_memory",
    "reported",
]

#: The bases of both libraries' user errors (one line each; ``key`` names the option at fault).
USER_ERRORS: tuple[type[Exception], ...] = (FbsegError, TurbsimError)


def user_error(error: Exception, flags: dict[str, str] | None = None) -> click.ClickException:
    """A usage error naming the flag (exit 2) when ``error.key`` is in ``flags``, else the
    error's one line (exit 1)."""
    key = getattr(error, "key", None)
    if flags and key in flags:
        return click.BadParameter(str(error), param_hint=f"'{flags[key]}'")
    return click.ClickException(str(error))


#: Config keys that are arguments, not ``--flags``, of ``fbseg train``.
_ARGUMENTS = {"shards": "SHARDS"}


def _flag(key: str) -> str:
    return _ARGUMENTS.get(key) or "--" + key.replace("_", "-")


def config_error(error: ConfigError, given: dict[str, Any]) -> click.ClickException:
    """The click error of a bad config: a usage error (exit 2) naming the flag(s) when the
    values at fault came from the command line, else the one-line config message (exit 1).

    Args:
        error: the library's error (config-key words, ``keys`` at fault).
        given: config key -> value of the command line (None or False: not given).
    """
    if error.keys and all(given.get(k) is not None and given[k] is not False for k in error.keys):
        if len(error.keys) == 1:
            return click.BadParameter(error.reason, param_hint=f"'{_flag(error.keys[0])}'")
        return click.UsageError(error.describe(_flag))
    return click.ClickException(str(error))


def check_output_place(*paths: str | None) -> None:
    """Refuse up front (before any long computation) an output path that cannot be written:
    its nearest existing ancestor is a file, or a link on the way leads back to itself. Other
    OS errors surface when writing (:func:`turbsim_cli.options.os_error`)."""
    from feedbackseg.paths import SYMLINK_LOOP, is_symlink_loop

    for path in paths:
        if path is None:
            continue
        if is_symlink_loop(path):
            raise click.ClickException(f"{path}: {SYMLINK_LOOP}")
        ancestor = next((a for a in Path(path).parents if a.exists()), None)
        if ancestor is not None and not ancestor.is_dir():
            raise click.ClickException(f"{path}: cannot be created ({ancestor} is not a folder)")


def out_of_memory(error: BaseException, hint: str) -> click.ClickException | None:
    """The one line of an out-of-memory error (None: ``error`` is something else).

    Args:
        error: any exception (MemoryError, torch.OutOfMemoryError, the CPU allocator's
            RuntimeError, OpenCV's "Insufficient memory").
        hint: what to try, e.g. ``"try a smaller --height or --batch-size"``.
    """
    from feedbackseg.devices.memory import is_out_of_memory, out_of_memory_detail

    if not is_out_of_memory(error):
        return None
    detail = out_of_memory_detail(error)
    return click.ClickException(f"out of memory{f' ({detail})' if detail else ''}; {hint}")


def interrupted(error: KeyboardInterrupt, default: str) -> click.exceptions.Exit:
    """Print the one ``interrupted ...`` line of a Ctrl-C or SIGTERM on stderr; the exit (code
    128 + the signal: 130 for Ctrl-C, 143 for SIGTERM) to raise.

    Args:
        error: the KeyboardInterrupt; a :class:`feedbackseg.data.workers.Interrupted` carries its
            line (a training says what it keeps), any other gets ``default``.
        default: the line when the error carries none.
    """
    from feedbackseg.data.workers import Interrupted, interruption_signal

    click.echo(str(error) if isinstance(error, Interrupted) else default, err=True)
    return click.exceptions.Exit(128 + interruption_signal(error))


@contextmanager
def reported(
    flags: dict[str, str] | None = None,
    writing: str | os.PathLike | None = None,
    memory_hint: str | None = None,
    on_config_error: Callable[[ConfigError], click.ClickException] | None = None,
) -> Iterator[None]:
    """Inside the block, what goes wrong becomes fbseg's one line (the commands that compute:
    train, eval, study, predict).

    A library's user error: :func:`user_error` with ``flags`` (a :class:`ConfigError` through
    ``on_config_error`` when given); an OS error: :func:`turbsim_cli.options.os_error` naming
    ``writing`` when the error names no file; out of memory: :func:`out_of_memory` with
    ``memory_hint``. Anything else propagates (a bug: its traceback is wanted), and so do
    Ctrl-C and SIGTERM (the command says what its run keeps).
    """
    from turbsim_cli.options import os_error

    try:
        yield
    except USER_ERRORS as error:
        if on_config_error is not None and isinstance(error, ConfigError):
            raise on_config_error(error) from None
        raise user_error(error, flags) from None
    except OSError as error:
        raise os_error(error, writing) from None
    except Exception as error:
        if memory_hint is None:
            raise
        raise out_of_memory(error, memory_hint) or error from None
