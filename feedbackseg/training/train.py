"""The trainer of the three modes (SPEC-feedbackseg sections 2.4, 3, 4, 5): ``train(config)``.

One run lives in one folder RUN (``config.out``), laid out in :mod:`feedbackseg.runs.rundir`:
``config.json`` (the resolved TrainConfig), ``metrics.jsonl`` (one JSON object per logged step
and per validation, each with "step"), ``last.pt`` (every --checkpoint-every steps, atomic),
``best.pt`` (the best validation mIoU) and ``tensorboard/`` (if torch.utils.tensorboard imports).

Per step the mode's training step of :data:`feedbackseg.models.TRAIN_STEPS` runs (R on L1, S on
the segmentation loss, two Adam optimisers); the learning rates follow StepLR schedules stepped
at the end of every epoch. The state carried from step to step is a
:class:`~feedbackseg.training.train_state.TrainState`. A resumed run (``resume=True``) restores
weights, optimisers, schedulers, the GradScaler, the RNG states and the position inside the epoch,
so that on the CPU with ``workers=0`` it ends with the same weights as an uninterrupted run.

Start-up checks (:mod:`feedbackseg.training.preflight`: the validation split, the memory of a batch;
the shards' sample counts; :func:`feedbackseg.runs.rundir.check_run_dir`; the class weights and the
checkpoint to resume from) all run before RUN is written; a fresh run that fails or is
interrupted before its first checkpoint removes its ``config.json`` again, and one killed then
(config.json, no checkpoint) is started afresh by a plain rerun or ``--resume``. The run holds
RUN's lock (:mod:`feedbackseg.runs.runlock`) from before it looks at RUN until it ends: a second
training or a ``--resume`` of a live run is refused, naming its pid. Every training step checks
the flow and the losses before each backward pass (:class:`feedbackseg.models.NonFiniteError`);
running out of memory is a :class:`TrainError` naming the step (last.pt is kept, the run
resumes). Ctrl-C (and SIGTERM under :func:`feedbackseg.data.workers.sigterm_as_interrupt`) raises
:class:`feedbackseg.data.workers.Interrupted` with the one line to print. Loader workers ignore
Ctrl-C and end with the trainer, even after a kill -9 (:mod:`feedbackseg.data.workers`).

Validation runs :func:`feedbackseg.evaluation.evaluate.evaluate` on the bare model. Under
``torchrun`` R and S are wrapped in DistributedDataParallel separately (each has its own optimiser);
rank 0 alone writes files; validation splits the samples as ``indices[rank::world]`` and sums the
confusion matrices, so no pixel is counted twice.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from feedbackseg.config import ConfigError, TrainConfig
from feedbackseg.data.dataset import ShardDataset, steps_per_epoch
from feedbackseg.data.turbulence import OnlineTurbulence, check_turbulence
from feedbackseg.data.workers import Interrupted, interruption_signal, start_iterator, worker_init
from feedbackseg.devices.distributed import (
    DistributedContext,
    EpochIndexedDataset,
    ResumableDistributedSampler,
    setup_distributed,
)
from feedbackseg.devices.memory import is_out_of_memory, out_of_memory_detail
from feedbackseg.devices.precision import cuda_float32_precision
from feedbackseg.evaluation.restoration import smoothed_inverse
from feedbackseg.label_layout import label_layout
from feedbackseg.models import TRAIN_STEPS, NonFiniteError
from feedbackseg.modes import mode_of
from feedbackseg.runs.rundir import (
    BEST_NAME,
    CONFIG_NAME,
    LAST_NAME,
    METRICS_NAME,
    TENSORBOARD_DIR,
    TrainError,
    check_run_dir,
    check_run_place,
    discard_unstarted_run,
    setup_run_dir,
    unstarted_run,
)
from feedbackseg.runs.runlock import RunLockedError, run_lock
from feedbackseg.training.losses import focal_loss, iteration_gammas
from feedbackseg.training.preflight import check_batch_memory, check_val_split
from feedbackseg.training.progress import Progress as _Progress
from feedbackseg.training.train_state import (
    TrainState,
    build_state,
    save_last,
)
from feedbackseg.training.validation import validate

__all__ = [
    "BEST_NAME",
    "CONFIG_NAME",
    "LAST_NAME",
    "METRICS_NAME",
    "TENSORBOARD_DIR",
    "TrainError",
    "TrainResult",
    "TrainState",
    "build_seg_loss",
    "fit",
    "train",
    "train_one_epoch",
    "validate",
]


@dataclass
class TrainResult:
    """What a finished run reached.

    Attributes:
        run_dir: the run folder.
        step: optimiser steps taken in total.
        epoch: epochs completed (fractional epochs not counted).
        best_miou: best validation mIoU (None without validation, and in the restore mode).
        last_val: the last validation record (as in metrics.jsonl) or None.
        rank: this process's rank (0 without torchrun); rank 0 reports.
        best_psnr_gain_db: the restore mode's best validation PSNR gain of R [dB] or None.
    """

    run_dir: Path
    step: int
    epoch: int
    best_miou: float | None
    last_val: dict[str, Any] | None
    rank: int = 0
    best_psnr_gain_db: float | None = None


# --------------------------------------------------------------------------------- the loss
def build_seg_loss(
    config: TrainConfig, class_weights: torch.Tensor | None
) -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]:
    """The ``seg_loss(logits, label, t)`` closure of the training steps (SPEC 3).

    - ``cb-ifl``: :func:`focal_loss` with ``gamma_t = iteration_gammas(T)[t - 1]`` and
      ``class_weights`` (per-image weighted mean), times alpha;
    - ``ifl``: the same with unit weights;
    - ``ce``: gamma 0, unit weights (cross-entropy averaged per image), times alpha.

    Ignored pixels: 255; with unit weights in the 20-class layout the void class 19 too.

    Args:
        config: the run's config (loss, iterations, gamma_step, alpha, num_classes).
        class_weights: (C,) weights for cb-ifl (None: unit weights).

    Returns:
        seg_loss(logits (B, C, H, W), label (B, H, W) int64, t 1-based) -> scalar. Labels out of
        range raise :class:`TrainError` naming the training split.
    """
    gammas = iteration_gammas(max(config.iterations, 1), config.gamma_step)
    weights = class_weights if config.loss == "cb-ifl" else None
    ignore = label_layout(config.num_classes).loss_ignore(weighted=weights is not None)
    where = f"{config.shards} split {config.train_split!r}"

    def seg_loss(logits: torch.Tensor, label: torch.Tensor, t: int) -> torch.Tensor:
        gamma = 0.0 if config.loss == "ce" else gammas[min(t, len(gammas)) - 1]
        w = None if weights is None else weights.to(logits.device)
        try:
            loss = focal_loss(logits, label, gamma, w, ignore_index=ignore)
        except ValueError as error:
            raise TrainError(f"{where}: {error}") from None
        return config.alpha * loss

    return seg_loss


# ---------------------------------------------------------------------------------- data
def _seed_worker(worker_id: int) -> None:
    """DataLoader worker init: numpy/python RNG from the worker's torch seed, 1 OpenCV thread."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002
    random.seed(seed)
    import cv2

    cv2.setNumThreads(1)


def _loader_kwargs(config: TrainConfig, device: torch.device) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "num_workers": config.workers,
        "pin_memory": device.type == "cuda",
        "worker_init_fn": worker_init(_seed_worker),  # ignore Ctrl-C, end with the trainer
    }
    if config.workers > 0:
        import multiprocessing

        methods = multiprocessing.get_all_start_methods()
        # h5py (and numba's OpenMP) are not fork-safe: never fork workers.
        kwargs["multiprocessing_context"] = "forkserver" if "forkserver" in methods else "spawn"
        kwargs["persistent_workers"] = True
    return kwargs


def _datasets(
    config: TrainConfig, say: Callable[[str], None]
) -> tuple[ShardDataset, ShardDataset | None]:
    """The training and validation sets (the latter None without validation); checks the
    validation split and the memory of a batch first (nothing is written before)."""
    validate_split = check_val_split(config)
    train_set = ShardDataset(
        config.shards,
        config.train_split,
        height=config.height,
        augment=config.augment,
        crop=config.crop,
        seed=config.seed,
        locking=config.locking,
        num_classes=config.num_classes,
        # online turbulence distorts the clean images afresh (feedbackseg.data.turbulence)
        input="clean" if config.turbulence == "online" else config.input,
        return_flow=config.flow_loss == "epe" and config.turbulence == "stored",
    )
    if train_set.return_flow and not train_set.has_flow:
        raise ConfigError(
            f"{config.shards} stores no flow (turbsim generate --store-flow); the EPE loss "
            "needs it, or --turbulence online",
            "flow_loss",
        )
    check_batch_memory(config, train_set.image_size)
    check_turbulence(config, train_set.stored_size, train_set.image_size)
    val_set = None
    if config.val_split is not None and not validate_split:
        say(f"note: {config.shards} has no split 'val': no validation, no {BEST_NAME}")
    if validate_split:
        val_set = ShardDataset(
            config.shards,
            config.val_split,
            height=config.height,
            locking=config.locking,
            num_classes=config.num_classes,
            input=config.input,  # best.pt is chosen on the input the model is trained for
        )
    return train_set, val_set


@dataclass
class _Data:
    """The data side of a run: datasets, the resumable sampler and loader, the step target."""

    train_set: ShardDataset
    val_set: ShardDataset | None
    sampler: ResumableDistributedSampler
    loader: DataLoader
    steps_per_epoch: int
    total: int
    turbulence: OnlineTurbulence | None = None


def _data(
    config: TrainConfig,
    ctx: DistributedContext,
    train_set: ShardDataset,
    val_set: ShardDataset | None,
) -> _Data:
    sampler = ResumableDistributedSampler(
        train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=config.seed
    )
    # A private generator: creating loader iterators never touches the global torch RNG.
    loader = DataLoader(
        EpochIndexedDataset(train_set),
        batch_size=config.batch_size,
        sampler=sampler,
        drop_last=False,
        generator=torch.Generator().manual_seed(config.seed),
        **_loader_kwargs(config, ctx.device),
    )
    spe = steps_per_epoch(len(train_set), config.batch_size, ctx.world_size)
    total = config.max_steps if config.max_steps is not None else config.epochs * spe
    turbulence = None
    if config.turbulence == "online":
        turbulence = OnlineTurbulence(
            config, train_set.stored_size, train_set.image_size, ctx.device
        )
    return _Data(train_set, val_set, sampler, loader, spe, total, turbulence)


# ----------------------------------------------------------------------------------- train
def _take_step(
    state: TrainState,
    batch: dict[str, Any],
    seg_loss: Any,
    turbulence: OnlineTurbulence | None = None,
) -> tuple[dict[str, float], int]:
    """One optimiser step of the mode's training step on ``batch``: (losses, batch size).

    With ``turbulence`` the input is the batch's clean images distorted afresh on the device,
    each sample from its own (seed, epoch, index) draw.

    Raises:
        TrainError: a non-finite loss on any rank (last.pt keeps the last good step).
    """
    config, device = state.config, state.device
    clean = batch["clean"].to(device, non_blocking=True)
    flow = batch["flow"].to(device, non_blocking=True) if "flow" in batch else None
    if turbulence is not None:
        x, flow = turbulence(clean, state.epoch, batch["index"])
    else:
        x = batch["distorted"].to(device, non_blocking=True)
    label = batch["label"].to(device, non_blocking=True)
    if state.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        clean = clean.contiguous(memory_format=torch.channels_last)
    kwargs: dict[str, Any] = {"autocast_dtype": state.autocast_dtype, "scaler": state.scaler}
    mode = mode_of(config.mode)
    if mode.feedback:
        kwargs["iterations"] = config.iterations
    if config.flow_loss == "epe":  # the smoothed inverse of this sample's displacement
        kwargs["flow_target"] = smoothed_inverse(flow)
        kwargs["flow_weight"] = config.flow_weight
    try:
        result = TRAIN_STEPS[mode.name](
            state.step_model,
            x,
            mode.step_inputs(clean),
            label,
            state.opt_r,
            state.opt_s,
            seg_loss,
            **kwargs,
        )
    except NonFiniteError as error:  # met before a backward pass (this rank stops here)
        raise TrainError(
            f"step {state.step + 1}: {error}; training stopped, {_kept(state)}"
        ) from None
    state.step += 1
    finite = all(math.isfinite(v) for v in result.values())
    if not state.ctx.all_true(finite):
        values = ", ".join(f"{k}={v:.4g}" for k, v in result.items())
        raise TrainError(
            f"step {state.step}: the loss is not finite ({values}); training stopped, "
            f"{_kept(state)}"
        )
    return result, int(x.shape[0])


def _kept(state: TrainState) -> str:
    """What a stopped run keeps: ``RUN/last.pt keeps step N`` or that none was written."""
    if state.last_saved_step:
        return f"{state.run / LAST_NAME} keeps step {state.last_saved_step}"
    return "no checkpoint was written yet"


def train_one_epoch(
    state: TrainState, data: _Data, seg_loss: Any, progress: _Progress
) -> dict[str, Any] | None:
    """Train from ``state.batch_in_epoch`` to the end of the epoch (or of training).

    Logs every ``log_every`` steps, validates every ``val_every`` steps (or at the end of the
    epoch) and at the end, and writes last.pt at every validation, every ``checkpoint_every``
    steps and at the end.

    Returns:
        The last validation record of the epoch, or None.

    Raises:
        TrainError: a non-finite loss, labels out of range, or a split that gave no batches.
    """
    config = state.config
    data.sampler.set_epoch(state.epoch)
    data.sampler.set_start(state.batch_in_epoch * config.batch_size)
    data.train_set.set_epoch(state.epoch)
    taken, last_val = 0, None
    for batch in start_iterator(data.loader):  # Ctrl-C while workers start: after they run
        taken += 1
        result, size = _take_step(state, batch, seg_loss, data.turbulence)
        step_epoch = state.epoch
        state.batch_in_epoch += 1
        progress.add(result, size)
        progress.step(state.step, data.total)
        lrs = state.learning_rates()  # the rates this step used
        end_of_epoch = state.batch_in_epoch >= data.steps_per_epoch
        if end_of_epoch:
            state.end_epoch()
        done = state.step >= data.total
        if state.step % config.log_every == 0 or done:
            progress.log_train(state.step, step_epoch, data.total, lrs)
        validated = False
        if (
            done
            or (config.val_every is not None and state.step % config.val_every == 0)
            or (config.val_every is None and end_of_epoch)
        ):
            last_val = _validate(state, data, step_epoch, progress) or last_val
            validated = data.val_set is not None
        if done or validated or state.step % config.checkpoint_every == 0:
            save_last(state)
        if done or end_of_epoch:
            break
    if taken == 0:
        raise TrainError(f"{config.shards}: split {config.train_split!r} gave no batches")
    return last_val


def _validate(
    state: TrainState, data: _Data, at_epoch: int, progress: _Progress
) -> dict[str, Any] | None:
    """:func:`validate`; out of memory there is a TrainError naming the validation."""
    try:
        return validate(state, data.val_set, at_epoch, progress)
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        detail = out_of_memory_detail(error)
        raise TrainError(
            f"out of memory in the validation at step {state.step}"
            f"{f' ({detail})' if detail else ''}; try a smaller --batch-size or --height; "
            f"{_kept(state)}"
        ) from None


def _stopped(error: BaseException, state: TrainState, size: tuple[int, int]) -> Exception | None:
    """What to raise instead of ``error`` (Ctrl-C, SIGTERM, out of memory), or None."""
    if isinstance(error, KeyboardInterrupt):
        sig = interruption_signal(error)
        how = " (SIGTERM)" if sig == signal.SIGTERM else ""
        if state.last_saved_step:
            then = f": {_kept(state)}; rerun with --resume to continue"
        else:
            then = ", before the first checkpoint: nothing to resume; rerun the same command"
        return Interrupted(f"interrupted after {state.step} step(s) of {state.run}{how}{then}", sig)
    if is_out_of_memory(error):
        detail = out_of_memory_detail(error)
        return TrainError(
            f"out of memory at step {state.step + 1} (a batch of {state.config.batch_size} at "
            f"{size[0]}x{size[1]} px{f', {detail}' if detail else ''}); try a smaller "
            f"--batch-size or --height; {_kept(state)}"
        )
    return None


def _fit(
    config: TrainConfig, ctx: DistributedContext, log: Any, on_step: Any = None
) -> TrainResult:
    """Train as ``config`` says in the process group of ``ctx``; see :func:`fit`."""
    progress = _Progress(config, ctx, log, on_step)
    # start-up checks: nothing is written before they pass (a refused start leaves RUN as is)
    train_set, val_set = _datasets(config, progress.say)
    check_run_place(config)
    with _run_held(config, ctx):  # from before RUN is looked at until the run ends
        checkpoint = check_run_dir(config, ctx)
        if unstarted_run(config.out) and not config.overwrite:
            progress.say(f"note: {config.out} holds a run that stopped before its first "
                         "checkpoint: starting it afresh")  # fmt: skip
        if ctx.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes
        state = build_state(config, ctx, train_set.image_size, checkpoint, progress.say)
        try:
            setup_run_dir(config, ctx, checkpoint)
            return _run(config, ctx, state, checkpoint, progress, train_set, val_set)
        except BaseException as error:  # Ctrl-C and SIGTERM too
            if checkpoint is None and state.last_saved_step is None and ctx.is_main:
                # nothing to resume: a plain rerun must work; keep the log of any steps taken
                discard_unstarted_run(state.run, keep_log=state.step > 0)
            replacement = _stopped(error, state, train_set.image_size)
            if replacement is None:
                raise
            raise replacement from None


@contextlib.contextmanager
def _run_held(config: TrainConfig, ctx: DistributedContext) -> Iterator[None]:
    """Hold RUN's lock (:func:`feedbackseg.runs.runlock.run_lock`; rank 0 for the whole group);
    every rank stops when rank 0 cannot have it."""
    with contextlib.ExitStack() as stack:
        refused: Exception | None = None
        if ctx.is_main:
            try:
                stack.enter_context(run_lock(config.out))
            except (RunLockedError, OSError) as error:
                refused = error
        if not ctx.all_true(refused is None):
            raise refused or TrainError(f"{config.out}: rank 0 could not lock the run folder")
        yield


def _run(
    config: TrainConfig,
    ctx: DistributedContext,
    state: TrainState,
    checkpoint: dict[str, Any] | None,
    progress: _Progress,
    train_set: ShardDataset,
    val_set: ShardDataset | None,
) -> TrainResult:
    """The training loop of :func:`_fit`, once the run folder is set up."""
    data = _data(config, ctx, train_set, val_set)
    if checkpoint is not None:
        progress.say(
            f"resuming {state.run / LAST_NAME} at step {state.step}/{data.total} "
            f"(epoch {state.epoch})"
        )
    seg_loss = build_seg_loss(config, state.class_weights)
    progress.open_tensorboard()
    h, w = train_set.image_size
    what = (
        "R alone on L1"
        if not mode_of(config.mode).segmenter
        else f"{config.loss}, {config.num_classes} classes"
    )
    progress.say(
        f"training {config.mode} ({what}) on "
        f"{len(train_set)} samples at {h}x{w}, {data.steps_per_epoch} steps/epoch, "
        f"{data.total} steps, device {ctx.device}, world size {ctx.world_size}"
    )
    if data.turbulence is not None:
        progress.say(data.turbulence.describe())
    state.model.train()
    last_val: dict[str, Any] | None = None
    progress.reset()
    progress.step(state.step, data.total)
    while state.step < data.total:
        last_val = train_one_epoch(state, data, seg_loss, progress) or last_val
    progress.close()
    progress.say(f"done: {state.step} steps; {state.run}")
    return TrainResult(
        state.run, state.step, state.epoch, state.best_miou, last_val, ctx.rank,
        state.best_psnr_gain_db,
    )  # fmt: skip


def fit(
    config: TrainConfig,
    log: Callable[[str], None] | None = None,
    ctx: DistributedContext | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train a model as ``config`` says; see the module docstring for the files written.

    Args:
        config: the resolved configuration.
        log: progress messages (rank 0 only); default: print to stderr.
        on_step: called as ``on_step(step, total)`` on rank 0 after every optimiser step (and
            once before the first, with the step training starts from), e.g. a progress bar.
        ctx: the process group to train in; None: join the one of the torchrun environment
            (if any) and leave it at the end.

    Returns:
        What the run reached (on every rank).

    Raises:
        TrainError: RUN exists without --resume/--overwrite, --resume with a different config,
            labels out of range, a non-finite flow or loss, out of memory (the last good
            checkpoint is kept), CUDA asked for but not available.
        RunLockedError: (a TrainError) another live training holds RUN (its pid named).
        Interrupted: (a KeyboardInterrupt) Ctrl-C or SIGTERM; its text is the line to print.
        ConfigError: a validation split the shards do not have (key ``val_split``); samples
            too large for this machine's memory (key ``height``).
        DataError: missing or foreign shard folder, missing split, a missing, corrupt or
            truncated shard (one line naming it).
        OSError: RUN or a file in it cannot be written (``filename`` names it).
        CheckpointError: an unreadable last.pt or one of another mode; a bad
            --pretrained-encoder file.
    """
    owned = ctx is None
    if ctx is None:
        try:
            ctx = setup_distributed(config.device)
        except ValueError as error:
            raise TrainError(str(error)) from None
    try:
        with cuda_float32_precision(config.tf32):
            return _fit(config, ctx, log, on_step)
    finally:
        if owned:
            ctx.close()


def train(
    config: TrainConfig,
    log: Callable[[str], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train a model as ``config`` says (the public entry of ``fbseg train``): :func:`fit`.

    Raises:
        TrainError, DataError, CheckpointError: see :func:`fit`; ConfigError is raised earlier,
            when the config is built.
    """
    return fit(config, log, on_step=on_step)
