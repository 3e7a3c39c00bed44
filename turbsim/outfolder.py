"""The output folder of a generate run: decide whether it may be used, lock it, clean it, and
check the shards already published in it.

Rules (what ``turbsim generate`` promises about ``--out``):

- Every decision comes before any deletion: ``overwrite`` deletes only turbsim's own files
  (manifest, recipe, ``{split}/shard-*`` files, temporaries) and refuses, deleting nothing, when
  the folder holds anything else or another live process is writing in it.
- Decisions and the manifest are taken under an exclusive ``flock`` of ``OUT/.turbsim.lock``
  (:func:`output_lock`), so tasks of one array started together see each other's files.
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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from turbsim import _files, shards
from turbsim.plan import GenerateError, ShardTask
from turbsim.recipe import Recipe
from turbsim.render import sidecar_path

#: The resolved recipe and its hash, written first into every output folder.
RECIPE_FILE = "recipe.json"
#: The lock file of an output folder (never deleted: deleting a lock file races its users).
LOCK_NAME = ".turbsim.lock"


@contextlib.contextmanager
def output_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``root/.turbsim.lock`` (blocking until it is free).

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
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, _files.default_mode())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # e.g. ENOLCK on a network filesystem without lock support
            pass
        yield
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
        return name == LOCK_NAME or any(
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
    return any(p.name != LOCK_NAME for p in root.iterdir())


def prepare_output(root: Path, recipe: Recipe, resume: bool, overwrite: bool, subset: bool) -> None:
    """Create/check the output folder under its lock: refuse a foreign, a different-recipe or a
    busy folder before deleting anything; delete a previous dataset (``overwrite``) and stale
    temporaries; write ``recipe.json``.

    Raises:
        GenerateError: ``key`` ``"resume"`` (resume with overwrite), ``"overwrite"`` (overwrite
            with a shard selection) or ``"out"`` (the folder).
        OSError: the folder cannot be created or written.
    """
    if resume and overwrite:
        raise GenerateError("resume and overwrite exclude each other", "resume")
    if overwrite and subset:
        raise GenerateError(
            "overwrite deletes the whole dataset, so it cannot go with a shard selection "
            "(the tasks of one array would delete each other's shards): overwrite once without "
            "a selection, or delete the folder, then start the tasks",
            "overwrite",
        )
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


def _check_previous(root: Path, recipe_file: Path, recipe: Recipe, continuing: bool) -> None:
    """A non-empty output folder must be ours, made with ``recipe``, and continued on purpose."""
    if not recipe_file.is_file():
        raise GenerateError(
            f"{root}: not empty and not a turbsim output folder; choose an empty output folder",
            "out",
        )
    if not continuing:
        raise GenerateError(
            f"{root}: already holds a dataset; set resume to continue it or overwrite to "
            "replace it",
            "out",
        )
    try:
        previous = json.loads(recipe_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GenerateError(f"{recipe_file}: unreadable ({exc})", "out") from None
    if previous.get("recipe_hash") != recipe.digest():
        raise GenerateError(
            f"{recipe_file}: the folder was made with another recipe "
            f"({str(previous.get('recipe_hash'))[:12]} != {recipe.digest()[:12]}); "
            "use the same recipe, or overwrite it",
            "out",
        )


def is_present(root: Path, task: ShardTask) -> bool:
    """Cheap: the shard and its sidecar exist (nothing is read)."""
    return (
        sidecar_path(root, task.split, task.index).is_file()
        and shards.shard_path(root, task.split, task.index).is_file()
    )


def published_record(root: Path, task: ShardTask) -> tuple[dict[str, Any] | None, str]:
    """The sidecar record of a published shard that may be kept, or None and why not.

    A shard is kept when its sidecar is readable, the file's size and SHA-256 equal the
    sidecar's, and it opens as a complete shard holding the planned names in order.

    Returns:
        (record, "") or (None, reason); the reason is "" when the shard is simply absent.
    """
    side = sidecar_path(root, task.split, task.index)
    path = shards.shard_path(root, task.split, task.index)
    if not (side.is_file() and path.is_file()):
        return None, ""
    try:
        record = json.loads(side.read_text())
        size = path.stat().st_size
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None, f"{side}: unreadable sidecar"
    if not isinstance(record, dict):
        return None, f"{side}: unreadable sidecar"
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
