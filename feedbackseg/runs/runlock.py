"""One training at a time per run folder: the run lock ``RUN/.fbseg.lock``.

A training (plain, ``--resume`` or ``--overwrite``) holds an exclusive ``fcntl.flock`` on
``RUN/.fbseg.lock`` from before it looks at RUN's files until it ends, on success, failure or
Ctrl-C alike (:func:`run_lock`, a context manager; ``fbseg study`` trains its runs one after
the other in one process, each under its own hold). It never waits: a start whose RUN is held
is refused at once, before anything in RUN is read or deleted, naming the holder's process id
and host, which the holder writes into the file (one ``pid host`` line).

The kernel drops a ``flock`` when its holder dies, even by SIGKILL: a lock file left behind by
a killed run is stale and is simply taken over. The holder deletes the file when it lets go
(first checking, after locking, that the file it locked is still the one at that name, so that
deleting never lets two holders in). Where the filesystem refuses locks (ENOLCK on some network
filesystems) the pid in the file decides: a live process of this host other than this one
holds RUN; anything else is stale.

Same pattern as ``turbsim.pipeline.outfolder.run_lock`` (turbsim's output folders). No torch at
import time.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from feedbackseg.runs.rundir import TrainError
from turbsim import _files

__all__ = ["LOCK_NAME", "RunLockedError", "lock_holder", "run_lock"]

#: The run lock's file name in RUN.
LOCK_NAME = ".fbseg.lock"
#: A refused start reads the holder's line up to this many times, this far apart [s] (the
#: holder writes it just after locking).
_HOLDER_READS = 10
_HOLDER_READ_PAUSE_S = 0.02
#: The run folders (real paths) this process holds: a nested :func:`run_lock` of one of them is
#: a no-op (flock would refuse a second hold even within one process).
_HELD: set[str] = set()


class RunLockedError(TrainError):
    """RUN is held by another live training; one-line message naming its pid and host."""


def _holder_line() -> str:
    return f"{os.getpid()} {socket.gethostname()}\n"


def _parse(text: str) -> tuple[int, str] | None:
    parts = text.split()
    if not parts or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1] if len(parts) > 1 else ""


def lock_holder(run_dir: str | os.PathLike) -> tuple[int, str] | None:
    """(pid, host) written in ``RUN/.fbseg.lock``, or None (no file, or no holder line).

    The file names the last holder: a live one while the lock is held, a dead one after a kill.
    """
    try:
        return _parse((Path(run_dir) / LOCK_NAME).read_text(errors="replace"))
    except OSError:
        return None


def _alive_here(holder: tuple[int, str]) -> bool:
    """Whether ``holder`` is another live process (one of another host cannot be checked)."""
    pid, host = holder
    if host and host != socket.gethostname():
        return True
    if pid == os.getpid():
        return False
    return _files.process_alive(pid)


def _refusal(run: Path, fd: int) -> RunLockedError:
    holder = None
    for _ in range(_HOLDER_READS):
        holder = _parse(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        if holder is not None:
            break
        time.sleep(_HOLDER_READ_PAUSE_S)  # its line is being written
    if holder is None:
        who = "pid unknown"
    else:
        here = not holder[1] or holder[1] == socket.gethostname()
        who = f"pid {holder[0]}" + ("" if here else f" on {holder[1]}")
    return RunLockedError(
        f"{run}: in use by another fbseg train ({who}, lock {run / LOCK_NAME}); wait for it to "
        "finish or stop it, then rerun"
    )


def _lock(path: Path) -> tuple[int, bool]:
    """Open and lock ``path``: (fd, whether flock holds it; False: the filesystem refuses).

    Raises:
        RunLockedError: another process holds it.
    """
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, _files.default_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            error = _refusal(path.parent, fd)
            os.close(fd)
            raise error from None
        except OSError:  # ENOLCK and the like: no locks on this filesystem
            holder = _parse(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
            if holder is not None and _alive_here(holder):
                error = _refusal(path.parent, fd)
                os.close(fd)
                raise error from None
            return fd, False
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:  # the last holder deleted it as it let go
            same = False
        if same:
            return fd, True
        os.close(fd)  # locked a file no longer at that name: lock the new one


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, enabled: bool = True) -> Iterator[None]:
    """Hold RUN's lock for the block (RUN is created if needed; removed again if it was created
    here and is empty at the end). Re-entrant within one process: a block inside another
    holding the same RUN runs without locking again (``fbseg study`` may hold a run's lock
    around its training, which takes it too).

    Args:
        run_dir: the run folder.
        enabled: False: a no-op (the ranks other than 0 of a torchrun group, whose rank 0
            holds the lock for the group).

    Raises:
        RunLockedError: another live training holds RUN (refused at once, nothing touched).
        OSError: RUN or its lock file cannot be created (the error names the path).
    """
    try:
        import fcntl  # noqa: F401 - POSIX only
    except ImportError:  # pragma: no cover - not POSIX: unlocked
        enabled = False
    if not enabled:
        yield
        return
    run = Path(run_dir)
    key = os.path.realpath(run)
    if key in _HELD:  # this process holds it already (e.g. a study around its training)
        yield
        return
    created = not run.exists()
    run.mkdir(parents=True, exist_ok=True)
    path = run / LOCK_NAME
    try:
        fd, _ = _lock(path)
    except BaseException:
        _remove_if_empty(run, created)
        raise
    _HELD.add(key)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_line().encode(), 0)
        yield
    finally:
        _HELD.discard(key)
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked: a waiting opener re-checks the name
        os.close(fd)  # releases the lock
        _remove_if_empty(run, created)


def _remove_if_empty(run: Path, created: bool) -> None:
    if created:
        with contextlib.suppress(OSError):
            run.rmdir()  # fails unless empty: a refused fresh start leaves no folder behind
