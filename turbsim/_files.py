"""The one atomic writer of the project (turbsim and feedbackseg both publish files through it).

Every file the project publishes (shards' sidecars, manifests, recipes, correlation tables,
checkpoints, metrics summaries, PNG pictures, Markdown reports) goes through
:func:`atomic_path`: the content is written to a unique temporary file next to the target, flushed
to disk, given the usual permissions (``0666 & ~umask``, never mkstemp's 0600), renamed over the
target, and the rename is made durable. A reader therefore sees the old file or the new one, never
a half-written one; an interrupted writer leaves only a temporary that :func:`is_temporary`
recognises and whose owner :func:`temporary_owner` names (its process id).

Temporary names: ``{name}.{pid}-{8 hex}.tmp`` in the target's folder (two writers of one target
never collide; a cleaner can tell its own and dead writers' temporaries from live ones).

numpy only (the npz writer); no h5py, numba, scipy or torch: feedbackseg may import this module.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Suffix of every temporary file the project writes.
TMP_SUFFIX = ".tmp"

_TMP_RE = re.compile(r"^(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")


def temporary_name(path: str | os.PathLike[str]) -> Path:
    """A unique temporary name next to ``path``: ``{name}.{pid}-{8 hex}.tmp``."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")


def is_temporary(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is named like a temporary of :func:`temporary_name` (or any ``*.tmp``)."""
    return Path(path).name.endswith(TMP_SUFFIX)


def temporary_owner(path: str | os.PathLike[str]) -> int | None:
    """The process id encoded in a temporary's name, or None if the name carries none."""
    match = _TMP_RE.match(Path(path).name)
    return int(match["pid"]) if match else None


def temporary_target(path: str | os.PathLike[str]) -> Path:
    """The file a temporary of :func:`temporary_name` was to become (``path`` if it is none)."""
    path = Path(path)
    match = _TMP_RE.match(path.name)
    return path.with_name(match["name"]) if match else path


#: How a full disk shows in error texts: the OS's words, or HDF5's, whose OSError (through
#: h5py) may carry errno None and a message of several lines around "errno = 28".
DISK_FULL_TEXT = re.compile(rf"No space left on device|errno = {errno.ENOSPC}\b")


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` says the disk is full (ENOSPC), as the OS or HDF5 reports it."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    return DISK_FULL_TEXT.search(str(error)) is not None


def disk_full_error(path: str | os.PathLike[str]) -> OSError:
    """The plain ``OSError(ENOSPC)`` naming ``path`` (the published name, not a temporary's)."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(temporary_target(path)))


def default_mode() -> int:
    """Permission bits of a newly published file: ``0o666 & ~umask`` (what ``open`` gives)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename in ``folder`` durable, where the platform allows it (cheap, best effort)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as stream:
        os.fsync(stream.fileno())


def publish(temporary: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Give a complete (already fsynced) temporary the usual mode and rename it over ``path``
    (atomic on POSIX); the caller fsyncs the folder (:func:`fsync_dir`) when it is done."""
    os.chmod(temporary, default_mode())
    os.replace(temporary, path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success publish it at ``path`` atomically.

    The caller writes the complete content to the yielded path (any library: h5py, torch.save,
    matplotlib). On a clean exit the temporary is fsynced (``fsync=True``), chmod-ed to
    :func:`default_mode`, renamed over ``path`` and the folder fsynced. On any exception,
    KeyboardInterrupt included, the temporary is removed and the exception propagates; ``path``
    keeps its old content.

    Args:
        path: the file to publish; its folder must exist.
        fsync: flush the content to disk before the rename (off only for cheap caches).
    """
    path = Path(path)
    temporary = temporary_name(path)
    try:
        yield temporary
        if fsync:
            _fsync_file(temporary)
        publish(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike[str], data: bytes, fsync: bool = True) -> None:
    """Publish ``data`` at ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, fsync=fsync) as temporary, open(temporary, "xb") as stream:
        stream.write(data)


def write_text(path: str | os.PathLike[str], text: str, fsync: bool = True) -> None:
    """Publish UTF-8 ``text`` at ``path`` atomically (newlines written as given)."""
    write_bytes(path, text.encode("utf-8"), fsync=fsync)


def write_json(
    path: str | os.PathLike[str],
    data: Any,
    indent: int | None = 2,
    sort_keys: bool = False,
    fsync: bool = True,
) -> None:
    """Publish ``json.dumps(data, indent=indent, sort_keys=sort_keys) + "\\n"`` atomically."""
    write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n", fsync=fsync)


def write_npz(path: str | os.PathLike[str], fsync: bool = True, **arrays: Any) -> None:
    """Publish ``numpy.savez`` of ``arrays`` at ``path`` atomically (uncompressed npz)."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes(path, buffer.getvalue(), fsync=fsync)


def temporary_is_live(path: str | os.PathLike[str]) -> bool:
    """Whether a temporary's writer may still be running: its name carries the process id of
    another live process on this host (checked with ``os.kill(pid, 0)``).

    A temporary of this very process, of a process that is gone, or whose name carries no
    process id is not live: a cleaner may delete it. Processes on another host sharing a
    network folder cannot be seen from here: their temporaries count as live only if a process
    of the same id happens to run here.
    """
    pid = temporary_owner(path)
    if pid is None or pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the process exists but belongs to another user
        return True
    except OSError:
        return False
    return True


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie, ended but not yet reaped, does not;
    one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, as another user
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (not Linux): os.kill said it exists
        return True
