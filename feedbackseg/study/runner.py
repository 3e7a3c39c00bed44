"""``fbseg study``: the paper's comparison as one command (cells x seeds of ordinary runs).

The study file (cells, seeds, the run layout) is :mod:`feedbackseg.study.study_file`; this module
runs it: trains each run (resumable), evaluates it, and hands the evaluations to
:mod:`feedbackseg.study.report`.

Layout of the study folder STUDY:

- ``runs/{cell}/seed-{seed}/``: an ordinary run folder (``fbseg train``'s config.json,
  metrics.jsonl, last.pt, best.pt), validated on the ``val`` split of its own input; a finished run
  is skipped, an unfinished one resumed (``resume=True``);
- ``runs/{cell}/seed-{seed}/study_done.json``: the completion marker, written once the training
  returned; only a run whose marker counts the study's steps and names its best.pt is finished
  (:mod:`feedbackseg.study.records`);
- ``runs/{cell}/seed-{seed}/study_eval.json``: that run's evaluation (:func:`evaluate_run`),
  reused only for the best.pt (sha256) and step count it was computed from;
- ``study.json`` (the resolved study), ``results.json``, ``results.md``, ``study.png``,
  ``curves.png``
  (:mod:`feedbackseg.study.report`), written once every run is finished, results.json last.

Every file is published atomically, so concurrent ``--only`` tasks never read a partial one.

Every number of ``results.json`` comes from
:func:`feedbackseg.evaluation.evaluate.evaluate_checkpoint` on
``best.pt`` with the defaults of ``fbseg eval`` (split ``val``, the checkpoint's height and
iterations, batch 1, float32), so ``fbseg eval RUN/best.pt SHARDS`` prints the same mIoU.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feedbackseg.config import ConfigError, TrainConfig, resolve_config
from feedbackseg.data.dataset import split_names, split_shards, steps_per_epoch
from feedbackseg.devices.launch import is_rank_zero
from feedbackseg.json_values import json_safe
from feedbackseg.modes import mode_of
from feedbackseg.runs.rundir import BEST_NAME, CONFIG_NAME, LAST_NAME, saved_config_diff
from feedbackseg.study.records import (
    cached_evaluation,
    checkpoint_identity,
    clear_done,
    read_done,
    write_done,
    write_evaluation,
)
from feedbackseg.study.study_file import (
    STUDY_SPLIT,
    Cell,
    Study,
    StudyError,
    run_dir,
)
from turbsim import _files

__all__ = [
    "StudyOutcome",
    "evaluate_run",
    "run_config",
    "run_study",
]


def run_config(
    study: Study,
    cell: str,
    seed: int,
    shards: str | os.PathLike,
    study_dir: str | os.PathLike,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """The TrainConfig of one run: the cell's values, ``seed``, validation on ``val``."""
    values = {**study.cells[cell].values, **(overrides or {})}
    values.update(seed=seed, val_split=STUDY_SPLIT)
    needed = study.cells[cell].depends_on
    if needed is not None:
        values["pretrained_restorer"] = str(run_dir(study_dir, needed, seed) / BEST_NAME)
    out = run_dir(study_dir, cell, seed)
    try:
        return resolve_config(shards, out, values.get("recipe"), None, values)
    except ConfigError as error:
        raise StudyError(f"{study.source}: [cells.{cell}]: {error}") from None


def total_steps(config: TrainConfig) -> int:
    """Optimiser steps of a run of ``config`` in one process (what the trainer targets)."""
    if config.max_steps is not None:
        return config.max_steps
    samples = sum(int(e["samples"]) for e in split_shards(config.shards, config.train_split))
    return config.epochs * steps_per_epoch(samples, config.batch_size)


def check_run_folder(config: TrainConfig) -> bool:
    """Whether the run folder holds a run (a config.json), checked to be one of ``config``.

    Raises:
        StudyError: the folder holds a run of other shards (naming both folders), or of another
            config (the study file changed).
    """
    run = Path(config.out)
    saved = saved_config_diff(config, StudyError)
    if saved is None:
        return False
    path, differ = saved
    if not differ:
        return True
    old_shards = json.loads(path.read_text()).get("shards")
    if old_shards != config.shards:
        raise StudyError(
            f"{run}: was trained on the shards {old_shards}, not {config.shards}: the shards "
            "differ; give the original shards or use a new --out"
        )
    raise StudyError(
        f"{run}: holds a run of another config ({'; '.join(differ)}); the study file "
        "changed: use a new --out"
    )


def run_finished(config: TrainConfig) -> bool:
    """Whether the run folder holds a finished run of ``config``: its completion marker
    (written once the training returned) counts the run's steps and names its best.pt.

    Raises:
        StudyError: the folder holds a run of other shards or of another config.
    """
    if not check_run_folder(config):
        return False
    return read_done(config.out, total_steps(config)) is not None


def _train_run(config: TrainConfig, resume: bool, log: Callable[[str], None]) -> None:
    """Train (or resume) one run, then write its completion marker; a started run is resumed
    only with ``resume`` (one trained to its end but unmarked takes no step)."""
    from feedbackseg.runs.runlock import run_lock
    from feedbackseg.training.train import train

    run = Path(config.out)
    with run_lock(run, enabled=is_rank_zero()):  # the marker and the training under one lock
        started = (run / CONFIG_NAME).is_file()
        if started and not (run / LAST_NAME).is_file():
            config = dataclasses.replace(config, overwrite=True)  # no checkpoint to keep
        elif started:
            if not resume:
                raise StudyError(f"{run}: unfinished run; pass --resume to continue it")
            config = dataclasses.replace(config, resume=True)
        if is_rank_zero():
            clear_done(run)  # a stale marker must not outlive the checkpoint it names
        result = train(config, log=log)
        if is_rank_zero():
            write_done(run, result.step)


# ------------------------------------------------------------------------------ evaluation
def evaluate_run(config: TrainConfig, cell: Cell, device: str | None = None) -> dict[str, Any]:
    """Evaluate a finished run's best.pt and write ``RUN/study_eval.json`` (read back if it was
    computed from this best.pt, by sha256, and this step count; else computed again).

    Keys: ``miou``, ``per_class`` (fractions; distorted val: what ``fbseg eval RUN/best.pt
    SHARDS`` reports), ``pixel_accuracy``, ``resolution`` [H, W], ``iterations``, ``step``
    (of best.pt), ``steps`` (of the run), ``checkpoint`` (the best.pt sha256 and step count
    it was computed from); ``miou_clean``, ``per_class_clean`` for a cell
    trained on clean input (the clean val images); ``psnr_restored``, ``psnr_distorted`` [dB]
    and, when the shards store the flow, ``flow_epe_px`` and ``flow_epe_zero_px`` for restoration
    cells; ``miou_per_iteration`` (distorted val, after each feedback iteration t = 1..T) for
    feedback cells. At t = 1 the feedback signal is exactly zero (the delta of logits is
    ``logits_0 - logits_0``), so ``miou_per_iteration[0]`` is the mIoU with the feedback zeroed.
    """
    run = Path(config.out)
    target = total_steps(config)
    marker = read_done(run, target)
    identity = checkpoint_identity(run, marker["steps"] if marker else target)
    cached = cached_evaluation(run, identity)
    if cached is not None:
        return cached
    device = device or config.device
    best = run / BEST_NAME
    data = _segmentation(config, cell, best, device) if mode_of(cell.mode).segmenter else {}
    if cell.restores:
        data.update(_restoration(config, best, device))
    data.setdefault("miou", None)  # the restore mode segments nothing
    data.setdefault("per_class", {})
    data["steps"] = identity["steps"]
    data = json_safe({**data, "checkpoint": identity})
    if is_rank_zero():
        write_evaluation(run, data, identity)
    return data


def _segmentation(config: TrainConfig, cell: Cell, best: Path, device: str) -> dict[str, Any]:
    """The mIoU keys of :func:`evaluate_run` (``fbseg eval``'s numbers)."""
    from feedbackseg.evaluation.evaluate import evaluate_checkpoint

    evaluation = evaluate_checkpoint(best, config.shards, STUDY_SPLIT, device=device)
    result = evaluation.result.to_dict()
    data: dict[str, Any] = {
        "miou": result["miou"],
        "per_class": result["per_class"],
        "pixel_accuracy": result["pixel_accuracy"],
        "resolution": result["resolution"],
        "iterations": evaluation.iterations,
        "step": evaluation.step,
    }
    if len(result.get("miou_per_iteration") or []) > 1:
        data["miou_per_iteration"] = result["miou_per_iteration"]
    if cell.input == "clean":
        clean = evaluate_checkpoint(best, config.shards, STUDY_SPLIT, device=device, input="clean")
        data["miou_clean"] = clean.result.to_dict()["miou"]
        data["per_class_clean"] = clean.result.to_dict()["per_class"]
    return data


def _restoration(config: TrainConfig, best: Path, device: str) -> dict[str, Any]:
    """R's restoration keys of :func:`evaluate_run` (:mod:`feedbackseg.evaluation.restoration`):
    on the val split, and R's PSNR gain on as many stored training images
    (``psnr_gain_train_db``; a gain far above the val one is memorisation)."""
    from feedbackseg.evaluation.restoration import checkpoint_restoration

    val = checkpoint_restoration(best, config.shards, STUDY_SPLIT, device=device)
    train = checkpoint_restoration(
        best, config.shards, config.train_split, device=device, limit=val.get("samples")
    )
    data = {k: v for k, v in val.items() if k not in ("split", "mode")}
    data["psnr_gain_train_db"] = train.get("psnr_gain_db")
    data.setdefault("iterations", 1)
    return data


# ------------------------------------------------------------------------------ driver
@dataclass
class StudyOutcome:
    """What :func:`run_study` did.

    Attributes:
        trained: runs trained or resumed now.
        skipped: runs found finished.
        pending: runs of the study not finished yet (no results written while any is).
        written: the result files written (empty while runs are pending).
    """

    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


def run_study(
    study: Study,
    shards: str | os.PathLike,
    study_dir: str | os.PathLike,
    only: Iterable[tuple[str, int]] | None = None,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> StudyOutcome:
    """Train and evaluate the study's runs, then aggregate once every run is finished.

    Args:
        study: the cells and seeds.
        shards: the turbsim shard folder (``train`` and ``val`` splits).
        study_dir: STUDY.
        only: the runs to train now (``--only``); None: all of them.
        resume: continue unfinished runs (without it, an unfinished run is an error).
        overrides: TrainConfig keys over every cell (e.g. ``device``).
        log: progress lines (default: none).

    Raises:
        StudyError: no ``val`` split, a run folder of other shards or another config, an
            unfinished run without ``resume``. What :func:`feedbackseg.training.train.train` and
            :func:`feedbackseg.evaluation.evaluate.evaluate_checkpoint` raise passes through.
    """
    from feedbackseg.study.report import write_results

    say = log or (lambda _: None)
    if STUDY_SPLIT not in split_names(shards):
        raise StudyError(f"{shards}: no split {STUDY_SPLIT!r}; a study validates on it")
    study_dir = Path(study_dir)
    for cell, seed in study.runs():  # a folder of other shards or another study: refused now
        check_run_folder(run_config(study, cell, seed, shards, study_dir, overrides))
    if is_rank_zero():
        study_dir.mkdir(parents=True, exist_ok=True)
        _files.write_json(study_dir / "study.json", study.to_dict(), indent=2)
    selected = list(only) if only is not None else study.runs()
    selected.sort(key=lambda run: study.cells[run[0]].depends_on is not None)  # stable
    outcome = StudyOutcome()
    for cell, seed in selected:
        name = f"{cell}:{seed}"
        config = run_config(study, cell, seed, shards, study_dir, overrides)
        needed = study.cells[cell].depends_on
        if needed is not None and not run_finished(
            run_config(study, needed, seed, shards, study_dir, overrides)
        ):
            raise StudyError(
                f"[{name}] starts R from {needed}:{seed}, which is not finished: train it first "
                f"(--only {needed}:{seed})",
                "only",
            )
        if run_finished(config):
            outcome.skipped.append(name)
            say(f"[{name}] finished already: {config.out}")
        else:
            say(f"[{name}] training into {config.out}")
            _train_run(config, resume, lambda m, n=name: say(f"[{n}] {m}"))
            outcome.trained.append(name)
        evaluate_run(config, study.cells[cell])
    evaluations: dict[str, dict[int, dict[str, Any]]] = {}
    for cell, seed in study.runs():
        config = run_config(study, cell, seed, shards, study_dir, overrides)
        if not run_finished(config):
            outcome.pending.append(f"{cell}:{seed}")
            continue
        evaluations.setdefault(cell, {})[seed] = evaluate_run(config, study.cells[cell])
    if outcome.pending:
        say(f"{len(outcome.pending)} run(s) not finished: results once they are")
        return outcome
    if is_rank_zero():
        outcome.written = write_results(study, evaluations, study_dir, say)
    return outcome
