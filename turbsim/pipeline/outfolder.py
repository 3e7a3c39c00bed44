"""The output folder of a generate run: decide whether it may be used, lock it, clean it, and
check the shards already published in it.

Rules (what ``turbsim generate`` promises about ``--out``):

- Every decision comes before any deletion: ``overwrite`` deletes only turbsim's own files
  (manifest, recipe, ``{split}/shard-*`` files, temporaries) and refuses, deleting nothing, when
  the folder holds anything else or another live process is writing in it.
- A run holds the folder's run lock ``OUT/.turbsim.lock`` from before it reads the folder's
  recipe, manifest or shards, or deletes anything, until it ends (:func:`claim_output`,
  :func:`run_lock`): exclusively for a run over the whole plan (plain, ``resume``,
  ``overwrite``), shared by the tasks of shard selections. A start that cannot have it is
  refused at once, naming the holder's process id, so two starts never interleave and nothing
  is deleted under a running one. (Only a folder holding foreign files and no recipe is refused
  before that, so that no lock file is made in it.)
- Decisions and the manifest are taken under the exclusive decision lock
  ``OUT/.turbsim.decide.lock`` (:func:`output_lock`), so tasks of one array started together
  see each other's files.
- ``resume`` continues only a folder whose ``recipe.json`` and manifest (if any) were made with
  the same recipe, and keeps only shards whose sidecar names that recipe.
- Temporaries are deleted only when their writer is gone (:func:`turbsim._files.temporary_is_live`,
  a process of this host), and a task of a shard selection deletes only its own shards'; a run
  over the whole plan refuses to start while another process writes in the folder.
- A published shard is kept only if its size and SHA-256 match its sidecar and it opens as a
  complete shard with the planned names (:func:`published_record`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from turbsim import _files, shards
from turbsim.pipeline.plan import GenerateError, ShardTask
from turbsim.pipeline.recipe import Recipe
from turbsim.shards.sidecar import read_sidecar, sidecar_path

#: The resolved recipe and its hash, written first into every output folder.
RECIPE_FILE = "recipe.json"
#: The run lock of an output folder: every generate run holds it from before it looks at the
#: folder until it ends, exclusively for a run over the whole plan, shared by the tasks of shard
#: selections; a start that cannot have it is refused at once (:func:`run_lock`). Its content
#: names the holders, one ``pid host`` line each. Never deleted (that races its users).
LOCK_NAME = ".turbsim.lock"
#: The decision lock: held briefly while a run decides about the folder, cleans it, writes its
#: recipe or manifest, or edits the run lock's holder lines (:func:`output_lock`).
DECISION_LOCK_NAME = ".turbsim.decide.lock"
#: Both lock files (turbsim's own files, never deleted).
LOCK_NAMES = (LOCK_NAME, DECISION_LOCK_NAME)


def _flock(fd: int, operation: int) -> bool:
    """``fcntl.flock``; False where the filesystem refuses locks (e.g. ENOLCK on NFS).

    Raises:
        BlockingIOError: a non-blocking lock is held by another process.
    """
    import fcntl

    try:
        fcntl.flock(fd, operation)
    except BlockingIOError:
        raise
    except OSError:
        return False
    return True


@contextlib.contextmanager
def output_lock(root: Path) -> Iterator[None]:
    """Hold the exclusive decision lock ``root/.turbsim.decide.lock`` (blocking until it is free).

    Where ``flock`` is unavailable (no ``fcntl``, or a filesystem that refuses locks) the block
    runs unlocked.

    Raises:
        OSError: the lock file cannot be created (e.g. a read-only folder).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(root / DECISION_LOCK_NAME, os.O_RDWR | os.O_CREAT, _files.default_mode())
    try:
        _flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


#: A holder of the run lock: (process id, host name).
Holder = tuple[int, str]
#: A refused start reads the holder lines up to this many times, this far apart [s].
_HOLDER_READS = 10
_HOLDER_READ_PAUSE_S = 0.02


def _me() -> Holder:
    return os.getpid(), socket.gethostname()


def _read_holders(fd: int) -> list[Holder]:
    holders = []
    for line in os.pread(fd, 1 << 16, 0).decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            holders.append((int(parts[0]), parts[1]))
    return holders


def _write_holders(fd: int, holders: list[Holder]) -> None:
    data = "".join(f"{pid} {host}\n" for pid, host in holders).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _alive(holder: Holder) -> bool:
    """Whether a holder may still run (one of another host cannot be checked: assume so)."""
    pid, host = holder
    if host != socket.gethostname():
        return True
    return _files.process_alive(pid)


def _busy(root: Path, fd: int) -> GenerateError:
    """The one-line refusal of a start whose folder another run holds, naming the holders."""
    holders: list[Holder] = []
    for _ in range(_HOLDER_READS):  # no lock: a stopped holder may keep the decision lock
        holders = [h for h in _read_holders(fd) if _alive(h) and h != _me()]
        if holders:
            break
        time.sleep(_HOLDER_READ_PAUSE_S)  # its line is being written
    here = socket.gethostname()
    named = ", ".join(str(pid) if host == here else f"{pid} on {host}" for pid, host in holders)
    who = (
        f"another process (pid {named})"
        if len(holders) == 1
        else (f"other processes (pids {named})" if holders else "another process")
    )
    return GenerateError(
        f"{root}: {who} is generating into this folder; wait for it to finish or stop it, then "
        "rerun (only shard selections of one recipe may run in one folder together)",
        "out",
    )


@contextlib.contextmanager
def run_lock(root: Path, shared: bool = False) -> Iterator[None]:
    """Hold ``root/.turbsim.lock`` for a run: exclusive, or ``shared`` (a task of a selection).

    Never waits: another run holding it (exclusively, or shared when ``shared`` is False) makes
    a :class:`GenerateError` naming that run's process id, before anything in ``root`` is looked
    at. The holders are listed in the file while they hold it. Where ``flock`` is unavailable
    the block runs unlocked.

    Raises:
        GenerateError: (key ``"out"``) the folder is in use by another run.
        OSError: the lock file cannot be created (e.g. a read-only folder).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, _files.default_mode())
    try:
        try:
            locked = _flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(root, fd) from None
        if locked:
            with output_lock(root):
                others = [h for h in _read_holders(fd) if shared and _alive(h) and h != _me()]
                _write_holders(fd, [*others, _me()])
        try:
            yield
        finally:
            if locked:
                with output_lock(root):
                    _write_holders(fd, [h for h in _read_holders(fd) if h != _me()])
    finally:
        os.close(fd)  # releases the lock


def _is_our_file(path: Path, top_level: bool) -> bool:
    """A file turbsim writes: manifest, recipe, lock, ``{split}/shard-*``, their temporaries.

    Judged by name (a folder is never ours): a concurrent task's temporary may vanish (renamed
    into place) between listing the folder and looking at the entry, and must not count as
    foreign then.
    """
    name = path.name
    if path.is_dir():
        return False
    if top_level:
        ours = (shards.MANIFEST_NAME, RECIPE_FILE)
        return name in LOCK_NAMES or any(
            name == n or (name.startswith(n + ".") and _files.is_temporary(name)) for n in ours
        )
    return name.startswith("shard-") and (
        name.endswith((".h5", ".json")) or _files.is_temporary(name)
    )


def foreign_entries(root: Path) -> list[str]:
    """Names (relative to ``root``) of what turbsim did not write in an output folder."""
    foreign = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            try:
                children = sorted(entry.iterdir())
            except FileNotFoundError:  # removed meanwhile (another task's --overwrite)
                continue
            foreign += [
                f"{entry.name}/{p.name}" for p in children if not _is_our_file(p, top_level=False)
            ]
        elif not _is_our_file(entry, top_level=True):
            foreign.append(entry.name)
    return foreign


def _temporaries(root: Path) -> list[Path]:
    found = [p for p in root.glob(f"*{_files.TMP_SUFFIX}") if p.is_file()]
    return sorted(found + [p for p in root.glob(f"*/*{_files.TMP_SUFFIX}") if p.is_file()])


def live_temporaries(root: Path) -> list[Path]:
    """Temporaries in ``root`` whose writer is another live process."""
    return [p for p in _temporaries(root) if _files.temporary_is_live(p)]


def clean_stale_temporaries(root: Path, tasks: Iterable[ShardTask] | None = None) -> list[Path]:
    """Delete the temporaries in ``root`` whose writer is gone (or is this process).

    Args:
        root: the output folder.
        tasks: None: every temporary in the folder. Shard tasks: only the temporaries of these
            shards and their sidecars (a task of a shard selection touches nothing else: a
            sibling on another host may be writing, and its process id means nothing here).

    Returns:
        The deleted paths.
    """
    if tasks is None:
        candidates = _temporaries(root)
    else:
        candidates = []
        for task in tasks:
            for own in (
                shards.shard_path(root, task.split, task.index),
                sidecar_path(root, task.split, task.index),
            ):
                if own.parent.is_dir():
                    candidates += sorted(own.parent.glob(f"{own.name}.*{_files.TMP_SUFFIX}"))
    removed = []
    for path in candidates:
        if not _files.temporary_is_live(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _refuse_live_writer(root: Path) -> None:
    live = live_temporaries(root)
    if live:
        raise GenerateError(
            f"{root}: another process (pid {_files.temporary_owner(live[0])}) is writing "
            f"{live[0].relative_to(root)} here; wait for it to finish or stop it, then rerun "
            "(only shard selections of one recipe may write into one folder together)",
            "out",
        )


def _delete_our_files(root: Path) -> None:
    """Delete a previous dataset (only turbsim's files: :func:`foreign_entries` is empty)."""
    for path in (root / shards.MANIFEST_NAME, root / RECIPE_FILE):
        path.unlink(missing_ok=True)
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sub.iterdir():
            path.unlink(missing_ok=True)
        sub.rmdir()
    for path in _temporaries(root):
        path.unlink(missing_ok=True)


def _non_empty(root: Path) -> bool:
    return any(p.name not in LOCK_NAMES for p in root.iterdir())


def _check_options(resume: bool, overwrite: bool, subset: bool) -> None:
    if resume and overwrite:
        raise GenerateError("resume and overwrite exclude each other", "resume")
    if overwrite and subset:
        raise GenerateError(
            "overwrite deletes the whole dataset, so it cannot go with a shard selection "
            "(the tasks of one array would delete each other's shards): overwrite once without "
            "a selection, or delete the folder, then start the tasks",
            "overwrite",
        )


@contextlib.contextmanager
def claim_output(
    root: Path, recipe: Recipe, resume: bool, overwrite: bool, subset: bool
) -> Iterator[None]:
    """Hold the output folder for a run: the run lock first (refused at once when another run
    holds it), then :func:`prepare_output`; the lock is released when the block ends.

    A folder of foreign files only is refused before any lock file is made in it.

    Raises:
        GenerateError: see :func:`prepare_output`; key ``"out"`` also when another run holds
            the folder.
        OSError: the folder cannot be created or written.
    """
    _check_options(resume, overwrite, subset)
    if root.is_dir() and not (root / RECIPE_FILE).is_file() and foreign_entries(root):
        _check_previous(root, root / RECIPE_FILE, recipe, continuing=False)
    root.mkdir(parents=True, exist_ok=True)
    with run_lock(root, shared=subset):
        prepare_output(root, recipe, resume, overwrite, subset)
        yield


def prepare_output(root: Path, recipe: Recipe, resume: bool, overwrite: bool, subset: bool) -> None:
    """Create/check the output folder under its decision lock: refuse a foreign, a
    different-recipe or a busy folder before deleting anything; delete a previous dataset
    (``overwrite``) and stale temporaries; write ``recipe.json``. A run calls it through
    :func:`claim_output`, which holds the run lock meanwhile.

    Raises:
        GenerateError: ``key`` ``"resume"`` (resume with overwrite), ``"overwrite"`` (overwrite
            with a shard selection) or ``"out"`` (the folder).
        OSError: the folder cannot be created or written.
    """
    _check_options(resume, overwrite, subset)
    recipe_file = root / RECIPE_FILE
    if root.is_dir() and not recipe_file.is_file() and foreign_entries(root):
        _check_previous(root, recipe_file, recipe, continuing=False)  # before any lock file
    root.mkdir(parents=True, exist_ok=True)
    with output_lock(root):
        if _non_empty(root) and overwrite:
            foreign = foreign_entries(root)
            if foreign and not recipe_file.is_file():
                _check_previous(root, recipe_file, recipe, continuing=False)
            if foreign:
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise GenerateError(
                    f"{root}: holds files turbsim did not write ({shown}); nothing was deleted: "
                    "move them away or choose another output folder",
                    "out",
                )
            _refuse_live_writer(root)
            _delete_our_files(root)
        elif _non_empty(root):
            _check_previous(root, recipe_file, recipe, resume or subset)
            if not subset:  # shard selections of one array share the folder
                _refuse_live_writer(root)
        if not subset:  # a task of a selection cleans only its own shards' (in generate)
            clean_stale_temporaries(root)
        record = {"recipe_hash": recipe.digest(), "recipe": recipe.data}
        _files.write_json(recipe_file, record, sort_keys=True)


def _recorded_hash(path: Path) -> tuple[bool, str | None]:
    """(readable, the ``recipe_hash`` recorded in a JSON file, None if it records none)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # ValueError: JSON or UTF-8 errors
        return False, None
    if not isinstance(data, dict):
        return False, None
    value = data.get("recipe_hash")
    return True, value if isinstance(value, str) else None


def _check_previous(root: Path, recipe_file: Path, recipe: Recipe, continuing: bool) -> None:
    """A non-empty output folder must be ours, made with ``recipe``, and continued on purpose;
    its manifest, when there is one, must say the same recipe (no mixing of datasets)."""
    if not recipe_file.is_file():
        raise GenerateError(
            f"{root}: not empty and not a turbsim output folder; choose an empty output folder",
            "out",
        )
    if not continuing:
        raise GenerateError(
            f"{root}: already holds a dataset; pass --resume to continue it or --overwrite to "
            "replace it (resume=True / overwrite=True in Python)",
            "out",
        )
    readable, previous = _recorded_hash(recipe_file)
    if not readable:
        raise GenerateError(f"{recipe_file}: unreadable (not a JSON object)", "out")
    if previous != recipe.digest():
        raise GenerateError(
            f"{recipe_file}: the folder was made with another recipe "
            f"({str(previous)[:12]} != {recipe.digest()[:12]}); "
            "use the same recipe, or overwrite it",
            "out",
        )
    manifest = root / shards.MANIFEST_NAME
    readable, listed = _recorded_hash(manifest) if manifest.is_file() else (False, None)
    if readable and listed != recipe.digest():
        raise GenerateError(
            f"{manifest}: the dataset was made with another recipe "
            f"({str(listed)[:12]} != {recipe.digest()[:12]}) than {RECIPE_FILE} says; the "
            "folder mixes two datasets: overwrite it, or delete it",
            "out",
        )


def is_present(root: Path, task: ShardTask) -> bool:
    """Cheap: the shard and its sidecar exist (nothing is read)."""
    return (
        sidecar_path(root, task.split, task.index).is_file()
        and shards.shard_path(root, task.split, task.index).is_file()
    )


def published_record(
    root: Path, task: ShardTask, recipe_hash: str | None = None
) -> tuple[dict[str, Any] | None, str]:
    """The sidecar record of a published shard that may be kept, or None and why not.

    A shard is kept when its sidecar is readable, names ``recipe_hash`` (when both say one;
    sidecars written before they did are accepted), the file's size and SHA-256 equal the
    sidecar's, and it opens as a complete shard holding the planned names in order.

    Returns:
        (record, "") or (None, reason); the reason is "" when the shard is simply absent.
    """
    side = sidecar_path(root, task.split, task.index)
    path = shards.shard_path(root, task.split, task.index)
    if not (side.is_file() and path.is_file()):
        return None, ""
    try:
        record = read_sidecar(root, task.split, task.index)
        size = path.stat().st_size
    except (OSError, ValueError):
        return None, f"{side}: unreadable sidecar"
    made_with = record.get("recipe_hash")
    if recipe_hash is not None and made_with is not None and made_with != recipe_hash:
        return None, f"{path}: made with another recipe ({str(made_with)[:12]})"
    if record.get("bytes") != size:
        return None, f"{path}: size {size} bytes, its sidecar says {record.get('bytes')}"
    try:
        digest = shards.sha256_file(path)
    except OSError as error:
        return None, f"{path}: unreadable ({error.strerror or error})"
    if record.get("sha256") != digest:
        return None, f"{path}: sha256 differs from its sidecar (a damaged file)"
    skipped = {d.get("path") for d in record.get("skipped", []) if isinstance(d, dict)}
    expected = [s.stem for s in task.samples if s.image_path not in skipped]
    if not shards.is_published_shard_valid(path, expected):
        return None, f"{path}: not a complete shard with the planned samples"
    return record, ""
