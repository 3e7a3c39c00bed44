"""The run folder of one training run, and its metrics log (read by train, plot, eval, compare).

One run lives in one folder RUN (``TrainConfig.out``)::

    RUN/config.json     the resolved TrainConfig (indented, sorted keys)
    RUN/metrics.jsonl   one JSON object per logged step and per validation, each with "step"
    RUN/last.pt         the latest checkpoint (atomic)
    RUN/best.pt         the weights of the best validation mIoU
    RUN/tensorboard/    TensorBoard events, only if torch.utils.tensorboard imports
    RUN/.fbseg.lock     the run lock, while a training holds RUN (:mod:`feedbackseg.runs.runlock`)

``metrics.jsonl`` is appended one line per record; a killed run may leave its last line cut off.
:func:`read_metrics` is the one reader of the log: it skips such a half-written last line and
rejects any other line that is not a JSON object (one-line :class:`MetricsError`).

No torch at import time: ``fbseg plot`` and ``fbseg compare`` read the log through this module.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feedbackseg.errors import MetricsError, TrainError
from feedbackseg.paths import not_found
from turbsim import _files

if TYPE_CHECKING:
    from feedbackseg.config import TrainConfig
    from feedbackseg.devices.distributed import DistributedContext

__all__ = [
    "BEST_NAME",
    "CONFIG_NAME",
    "LAST_NAME",
    "METRICS_NAME",
    "TENSORBOARD_DIR",
    "MetricsError",
    "TrainError",
    "append_metrics",
    "check_run_dir",
    "check_run_place",
    "clean_temporaries",
    "discard_unstarted_run",
    "prepare_run_dir",
    "setup_run_dir",
    "read_metrics",
    "truncate_metrics",
    "unstarted_run",
]

CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.jsonl"
LAST_NAME = "last.pt"
BEST_NAME = "best.pt"
TENSORBOARD_DIR = "tensorboard"


# ------------------------------------------------------------------------------ the metrics log
def _metrics_path(run_dir: str | os.PathLike) -> Path:
    path = Path(run_dir)
    return path / METRICS_NAME if path.is_dir() else path


def _records(path: Path) -> Iterator[tuple[int, str, Any]]:
    """(line number, line, decoded value) of every non-blank line; a cut-off last line is
    skipped.

    Raises:
        MetricsError: a line that is not valid JSON and is not the last non-blank one.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    for position, (number, line) in enumerate(numbered):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            if position == len(numbered) - 1:
                return  # the half-written last line of a killed run
            raise MetricsError(f"{path}: line {number} is not valid JSON") from None
        yield number, line, value


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``RUN/metrics.jsonl``, in file order.

    Blank lines are skipped, and so is a last line that is not valid JSON (what a killed run
    leaves behind).

    Args:
        run_dir: a run folder, or the metrics file itself.

    Returns:
        One dict per record (``kind`` "train" or "val", ``step``, ...).

    Raises:
        MetricsError: no such file, or a line other than the last that is not a JSON object.
    """
    path = _metrics_path(run_dir)
    if not path.is_file():
        raise MetricsError(not_found(path, "metrics file"))
    records = []
    for number, _, record in _records(path):
        if not isinstance(record, dict):
            raise MetricsError(f"{path}: line {number} is not a JSON object")
        records.append(record)
    return records


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def append_metrics(run_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line to ``RUN/metrics.jsonl`` (flushed; NaN refused).

    Raises:
        OSError: the file cannot be written (disk full, ...), with ``filename`` the log's path.
    """
    path = Path(run_dir) / METRICS_NAME
    line = json.dumps(record, allow_nan=False, default=_json_default) + "\n"
    try:
        with open(path, "a") as handle:
            handle.write(line)
            handle.flush()
    except OSError as error:
        if error.filename is not None:
            raise
        raise OSError(error.errno, error.strerror or str(error), str(path)) from None


def truncate_metrics(run_dir: str | os.PathLike, step: int) -> None:
    """Drop the records logged after ``step`` (a killed run logged past its checkpoint).

    Kept lines are rewritten byte for byte (atomically); a cut-off last line is dropped.

    Raises:
        MetricsError: a corrupt line that is not the last.
    """
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        return
    kept = [
        line
        for _, line, record in _records(path)
        if isinstance(record, dict) and int(record.get("step", 0)) <= step
    ]
    _files.write_text(path, "".join(k + "\n" for k in kept))


# ------------------------------------------------------------------------------ the run folder
def clean_temporaries(run_dir: str | os.PathLike) -> None:
    """Remove the checkpoint temporaries an interrupted writer left in RUN."""
    run = Path(run_dir)
    for name in (LAST_NAME, BEST_NAME):
        for tmp in run.glob(f"{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
        for tmp in run.glob(f".{name}.*.tmp"):  # the names of earlier versions
            tmp.unlink(missing_ok=True)


def saved_config_diff(
    config: TrainConfig, error: type[Exception] = TrainError
) -> tuple[Path, list[str]] | None:
    """How ``config`` differs from the config.json saved in its run folder.

    Returns:
        None when the folder holds no config.json; else (its path, the differing keys as
        :func:`feedbackseg.config.config_diff` words them; empty when equal).

    Raises:
        ``error``: config.json is not valid JSON (one line naming it).
    """
    from feedbackseg.config import config_diff

    saved = Path(config.out) / CONFIG_NAME
    if not saved.is_file():
        return None
    try:
        old = json.loads(saved.read_text())
    except json.JSONDecodeError as problem:
        raise error(f"{saved}: not valid JSON ({problem})") from None
    return saved, config_diff(old, config.to_dict())


def unstarted_run(run_dir: str | os.PathLike) -> bool:
    """Whether RUN holds a run that stopped before its first checkpoint (killed, or stopped by
    a fault): a ``config.json`` but neither ``last.pt`` nor ``best.pt``. Nothing of it can be
    resumed; a plain rerun or ``--resume`` starts it afresh."""
    run = Path(run_dir)
    return (
        (run / CONFIG_NAME).is_file()
        and not (run / LAST_NAME).exists()
        and not (run / BEST_NAME).exists()
    )


def _resume_checkpoint(config: TrainConfig) -> dict[str, Any] | None:
    """Check that RUN can be resumed with ``config``; its last.pt, or None for a run that
    stopped before its first checkpoint (:func:`unstarted_run`: it starts afresh).

    ``out`` may differ from the saved config (a copied or moved run folder resumes).
    """
    from feedbackseg.runs.checkpoints import CheckpointError, load_checkpoint

    run = Path(config.out)
    saved = saved_config_diff(config)
    if saved is None:
        raise TrainError(f"{run}: nothing to resume (no {CONFIG_NAME}); drop --resume")
    saved_config, differ = saved
    if differ:
        raise TrainError(
            f"{saved_config}: --resume with a different config ({'; '.join(differ)}); "
            "use the original flags or start a new RUN"
        )
    if unstarted_run(run):
        return None  # stopped before its first checkpoint: it starts afresh, same config
    if not (run / LAST_NAME).is_file():
        raise TrainError(
            f"{run}: no {LAST_NAME} to resume from, but a {BEST_NAME} (a checkpoint was "
            "deleted?); start it again with --overwrite, or start a new RUN"
        )
    checkpoint = load_checkpoint(run / LAST_NAME)
    if checkpoint.get("mode") != config.mode:
        raise CheckpointError(
            f"{run / LAST_NAME}: holds a {checkpoint.get('mode')!r} model, not {config.mode!r}"
        )
    return checkpoint


def check_run_place(config: TrainConfig) -> None:
    """Refuse a RUN that is a file or cannot be created (read-only).

    Raises:
        TrainError: RUN is a file, or an existing folder above it is a file.
    """
    run = Path(config.out)
    if run.exists() and not run.is_dir():
        raise TrainError(f"{run}: exists and is not a folder")
    ancestor = next((p for p in run.parents if p.exists()), None)
    if ancestor is not None and not ancestor.is_dir():
        raise TrainError(f"{run}: cannot be created ({ancestor} is not a folder)")


def check_run_dir(config: TrainConfig, ctx: DistributedContext) -> dict[str, Any] | None:
    """Check RUN against resume/overwrite (read-only); the checkpoint to resume from (or None).

    Every rank checks; nothing is written, so a start that fails later leaves RUN as it was. A
    run that stopped before its first checkpoint (:func:`unstarted_run`) is no obstacle: a
    plain start replaces it, ``--resume`` starts it afresh (None). Call it under the run's
    lock (:func:`feedbackseg.runs.runlock.run_lock`): a live run before its first checkpoint looks
    the same.

    Raises:
        TrainError: RUN is a file, holds a run without resume/overwrite, or resume finds no run,
            no last.pt (but a best.pt) or a different config.
        CheckpointError: an unreadable last.pt or one of another mode.
    """
    check_run_place(config)
    run = Path(config.out)
    if config.resume:
        return _resume_checkpoint(config)
    if (run / CONFIG_NAME).is_file() and not config.overwrite and not unstarted_run(run):
        raise TrainError(
            f"{run}: holds a run already ({CONFIG_NAME}); pass --resume to continue it or "
            "--overwrite to replace it"
        )
    return None


def setup_run_dir(
    config: TrainConfig, ctx: DistributedContext, checkpoint: dict[str, Any] | None
) -> None:
    """Set RUN up after :func:`check_run_dir` and the other start-up checks passed.

    Rank 0 alone writes; all ranks see the same folder. A run without a checkpoint to resume
    from removes the files of an earlier one (``overwrite``, or one that stopped before its
    first checkpoint); every run drops the metrics logged after its checkpoint and writes
    ``config.json``.

    Raises:
        OSError: RUN cannot be created or written (the error names the path).
    """
    run = Path(config.out)
    # every rank has looked at the folder before rank 0 changes it (same answer everywhere)
    ctx.barrier()
    if ctx.is_main:
        run.mkdir(parents=True, exist_ok=True)
        clean_temporaries(run)
        if checkpoint is None:
            for name in (CONFIG_NAME, METRICS_NAME, LAST_NAME, BEST_NAME):
                (run / name).unlink(missing_ok=True)
            shutil.rmtree(run / TENSORBOARD_DIR, ignore_errors=True)
        truncate_metrics(run, int(checkpoint["step"]) if checkpoint else 0)
        _files.write_text(run / CONFIG_NAME, config.to_json() + "\n")
    ctx.barrier()


def discard_unstarted_run(run_dir: str | os.PathLike, keep_log: bool = False) -> None:
    """Unblock a plain rerun of a fresh run that failed before its first checkpoint.

    Removes config.json (what makes a rerun refuse) and, unless ``keep_log`` (steps were taken:
    their loss history explains the failure and stays until the rerun replaces it),
    metrics.jsonl and tensorboard/. Best effort; a run with a last.pt or a best.pt is left
    alone.
    """
    run = Path(run_dir)
    if (run / LAST_NAME).exists() or (run / BEST_NAME).exists():
        return
    for name in (CONFIG_NAME,) if keep_log else (CONFIG_NAME, METRICS_NAME):
        try:
            (run / name).unlink(missing_ok=True)
        except OSError:
            pass
    if not keep_log:
        shutil.rmtree(run / TENSORBOARD_DIR, ignore_errors=True)


def prepare_run_dir(config: TrainConfig, ctx: DistributedContext) -> dict[str, Any] | None:
    """:func:`check_run_dir` then :func:`setup_run_dir`; the checkpoint to resume from (or None).

    Raises:
        TrainError, CheckpointError: see :func:`check_run_dir`.
    """
    checkpoint = check_run_dir(config, ctx)
    setup_run_dir(config, ctx, checkpoint)
    return checkpoint
