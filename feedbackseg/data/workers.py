"""DataLoader worker processes that die with their trainer, and Ctrl-C or SIGTERM as one clean
interruption (``fbseg train``, ``fbseg eval``, ``fbseg study``).

Why the care. The trainer's workers start through the forkserver (never fork: h5py): they are
children of the forkserver process, not of the trainer, and each holds the forkserver's "alive"
pipe, so after a kill -9 of the trainer the forkserver never sees it go, PyTorch's own watchdog
(the worker's parent pid) never fires, and workers, forkserver and resource tracker ran on,
holding the shards open. So every worker (:func:`worker_init`):

- ignores SIGINT: a Ctrl-C in the terminal goes to the whole process group, and is the
  trainer's to handle;
- asks the kernel to SIGKILL it when its parent ends (``prctl(PR_SET_PDEATHSIG)``, Linux), which
  covers the spawn start method (the parent is the trainer) and a forkserver that dies;
- watches the trainer itself from a daemon thread, and ends the moment it ends: a pidfd of the
  trainer (Linux >= 5.3, no polling), else a poll of its pid twice a second.

Once the workers are gone the forkserver sees its pipe close and ends, and the resource tracker
with it. Ctrl-C while the workers start (:func:`starting_workers`): the interpreters being
started (forkserver, spawned workers) would die of it in their start-up ("Fatal Python error:
init_import_site", KeyboardInterrupt tracebacks). SIGINT is blocked in the starting thread
meanwhile (the children inherit the block: they never see a Ctrl-C) and a Ctrl-C that arrives
is raised as KeyboardInterrupt once they run. :func:`sigterm_as_interrupt` makes SIGTERM (kill,
SLURM, torchrun) end a run like Ctrl-C: the same cleanup and one "interrupted" line.

No torch at import time.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from turbsim._files import process_alive

__all__ = [
    "Interrupted",
    "exit_with",
    "interruption_signal",
    "sigterm_as_interrupt",
    "start_iterator",
    "starting_workers",
    "worker_init",
]

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
#: Seconds between two looks at the trainer where no pidfd can watch it.
_POLL_S = 0.5


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM ended a run; ``str()`` is the one line to print.

    Attributes:
        signal_number: the signal (SIGINT for Ctrl-C); the command exits with 128 + it.
    """

    def __init__(self, message: str = "interrupted", signal_number: int = signal.SIGINT):
        super().__init__(message)
        self.signal_number = int(signal_number)


# ------------------------------------------------------------------------- in the workers
def _arm_parent_death_signal() -> None:
    """SIGKILL this process when its parent ends (Linux; best effort elsewhere: nothing)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _watch(pid: int) -> None:
    """Block until process ``pid`` ends, then end this process at once (no cleanup: the
    trainer is gone, nobody reads what a worker would still send)."""
    fd = None
    with contextlib.suppress(OSError, AttributeError):
        fd = os.pidfd_open(pid)
    if fd is not None:
        select.select([fd], [], [])  # readable when the process has ended
    else:
        while process_alive(pid):
            time.sleep(_POLL_S)
    os._exit(1)


def exit_with(pid: int) -> None:
    """End this process when process ``pid`` (its trainer) ends, even by SIGKILL: the parent
    death signal and a daemon thread watching ``pid``; see the module docstring."""
    _arm_parent_death_signal()
    if not process_alive(pid):  # ended before the watch began
        os._exit(1)
    threading.Thread(target=_watch, args=(pid,), name="fbseg-trainer-watch", daemon=True).start()


def _init(trainer_pid: int, then: Callable[[int], None] | None, worker_id: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    exit_with(trainer_pid)
    if then is not None:
        then(worker_id)


def worker_init(then: Callable[[int], None] | None = None) -> Callable[[int], None]:
    """A DataLoader ``worker_init_fn`` for the workers of this process: they ignore SIGINT and
    end with this process (:func:`exit_with`); then ``then(worker_id)`` runs, if given.

    ``then`` must pickle (a module-level function): the forkserver and spawn start methods send
    the init function to the workers.
    """
    return functools.partial(_init, os.getpid(), then)


# ------------------------------------------------------------------------- in the trainer
def _defer_sigint() -> tuple[Any, list[int]] | None:
    """Replace the SIGINT handler by one that only records (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: pending.append(number))
    return previous, pending


@contextlib.contextmanager
def starting_workers() -> Iterator[None]:
    """Start worker processes in the block (e.g. ``iter(loader)``) safe from Ctrl-C.

    SIGINT is blocked in this thread, so the processes started meanwhile inherit the block and
    never see a Ctrl-C; one that arrives meanwhile is recorded and raised as KeyboardInterrupt
    when the block ends. The resource tracker is started first (starting it unblocks SIGINT).
    """
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    deferred = _defer_sigint()
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)  # runs pending handlers
        if deferred is not None:
            signal.signal(signal.SIGINT, deferred[0] or signal.default_int_handler)
    if deferred is not None and deferred[1]:
        raise KeyboardInterrupt


def start_iterator(loader: Any) -> Iterator[Any]:
    """``iter(loader)`` under :func:`starting_workers` when the loader has worker processes."""
    if getattr(loader, "num_workers", 0) <= 0:
        return iter(loader)
    with starting_workers():
        return iter(loader)


def _raise_terminated(number: int, frame: Any) -> None:
    raise Interrupted("interrupted (SIGTERM)", number)


def interruption_signal(error: BaseException) -> int:
    """The signal behind a KeyboardInterrupt: SIGTERM for :func:`sigterm_as_interrupt`'s."""
    return getattr(error, "signal_number", int(signal.SIGINT))


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`Interrupted` (a KeyboardInterrupt) in the block, as Ctrl-C would:
    the run cleans up and says so instead of vanishing (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
