"""The trainer of the three modes (SPEC-feedbackseg sections 2.4, 3, 4, 5): ``train(config)``.

One run lives in one folder RUN (``config.out``)::

    RUN/config.json     the resolved TrainConfig
    RUN/metrics.jsonl   one JSON object per logged step and per validation, each with "step"
    RUN/last.pt         the latest checkpoint (every --checkpoint-every steps, atomic)
    RUN/best.pt         the weights of the best validation mIoU
    RUN/tensorboard/    TensorBoard events, only if torch.utils.tensorboard imports

Per step the mode's training step of :data:`feedbackseg.models.TRAIN_STEPS` runs (R on L1, S on
the segmentation loss, two Adam optimisers); the learning rates follow StepLR schedules stepped
at the end of every epoch. A resumed run (``resume=True``) restores weights, optimisers,
schedulers, the GradScaler, the RNG states and the position inside the epoch, so that on the
CPU with ``workers=0`` it ends with the same weights as an uninterrupted run.

Under ``torchrun`` R and S are wrapped in DistributedDataParallel separately (each has its own
optimiser); rank 0 alone writes files; validation splits the samples as ``indices[rank::world]``
and sums the confusion matrices, so no pixel is counted twice.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from feedbackseg.checkpoints import (
    CheckpointError,
    export_state_dict,
    load_checkpoint,
    load_pretrained_encoder,
    save_checkpoint,
)
from feedbackseg.config import TrainConfig, config_diff
from feedbackseg.data import DataError, ShardDataset, pixel_counts, split_shards, steps_per_epoch
from feedbackseg.distributed import (
    DistributedContext,
    EpochIndexedDataset,
    ResumableDistributedSampler,
    ShardedEvalSampler,
    setup_distributed,
)
from feedbackseg.losses import (
    BMVC2020_CLASS_WEIGHTS,
    class_balanced_weights,
    focal_loss,
    iteration_gammas,
)
from feedbackseg.metrics import ConfusionMatrix
from feedbackseg.models import (
    TRAIN_STEPS,
    FeedbackSegmenter,
    RestoreSegmenter,
    build_model,
)
from feedbackseg.precision import amp_settings, cuda_float32_precision

__all__ = ["TrainError", "TrainResult", "build_seg_loss", "train"]

CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.jsonl"
LAST_NAME = "last.pt"
BEST_NAME = "best.pt"
TENSORBOARD_DIR = "tensorboard"
#: Evaluated classes: the 19 Cityscapes trainIds (the void class of the 20-class layout is not).
EVAL_CLASSES = 19
IGNORE_INDEX = 255


class TrainError(RuntimeError):
    """Training cannot start or had to stop; one-line message for the user."""


@dataclass
class TrainResult:
    """What a finished run reached.

    Attributes:
        run_dir: the run folder.
        step: optimiser steps taken in total.
        epoch: epochs completed (fractional epochs not counted).
        best_miou: best validation mIoU (None without validation).
        last_val: the last validation record (as in metrics.jsonl) or None.
        rank: this process's rank (0 without torchrun); rank 0 reports.
    """

    run_dir: Path
    step: int
    epoch: int
    best_miou: float | None
    last_val: dict[str, Any] | None
    rank: int = 0


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
    ignore = IGNORE_INDEX if (weights is not None or config.num_classes == 19) else 19
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


def _class_weights(config: TrainConfig, log: Callable[[str], None]) -> torch.Tensor | None:
    """(C,) float32 CB weights of the config (None for unit weights)."""
    if config.loss != "cb-ifl" or config.class_weights == "none":
        return None
    if config.class_weights == "bmvc2020":
        weights = BMVC2020_CLASS_WEIGHTS.clone()
        return weights if config.num_classes == 20 else weights[:19].clone()
    log(f"counting class pixels of split {config.train_split!r} for the class weights ...")
    counts = pixel_counts(config.shards, config.train_split, config.num_classes)
    if config.num_classes == 20:
        counts[19] = 0  # the void class carries weight 0 (SPEC 3)
    return class_balanced_weights(counts, beta=config.beta)


# ----------------------------------------------------------------------- files of the run
def _write_json_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _append_metrics(run: Path, record: dict[str, Any]) -> None:
    with open(run / METRICS_NAME, "a") as handle:
        handle.write(json.dumps(record, allow_nan=False, default=_json_default) + "\n")
        handle.flush()


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _truncate_metrics(run: Path, step: int) -> None:
    """Drop the metrics lines written after ``step`` (a killed run logged past its checkpoint)."""
    path = run / METRICS_NAME
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut off by a kill
        if isinstance(record, dict) and int(record.get("step", 0)) <= step:
            kept.append(line)
    _write_json_atomic(path, "".join(k + "\n" for k in kept))


def _clean_temporaries(run: Path) -> None:
    for name in (LAST_NAME, BEST_NAME):
        for tmp in run.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def _prepare_run_dir(config: TrainConfig, ctx: DistributedContext) -> dict[str, Any] | None:
    """Check RUN against --resume/--overwrite; returns the checkpoint to resume from (or None).

    Every rank checks (read-only), rank 0 alone writes; all ranks see the same folder.
    """
    run = Path(config.out)
    if run.exists() and not run.is_dir():
        raise TrainError(f"{run}: exists and is not a folder")
    saved_config = run / CONFIG_NAME
    checkpoint = None
    if config.resume:
        if not saved_config.is_file():
            raise TrainError(f"{run}: nothing to resume (no {CONFIG_NAME}); drop --resume")
        try:
            old = json.loads(saved_config.read_text())
        except json.JSONDecodeError as error:
            raise TrainError(f"{saved_config}: not valid JSON ({error})") from None
        differ = config_diff(old, config.to_dict())
        if differ:
            raise TrainError(
                f"{saved_config}: --resume with a different config ({'; '.join(differ)}); "
                "use the original flags or start a new RUN"
            )
        if (run / LAST_NAME).is_file():
            checkpoint = load_checkpoint(run / LAST_NAME)
            if checkpoint.get("mode") != config.mode:
                raise CheckpointError(
                    f"{run / LAST_NAME}: holds a {checkpoint.get('mode')!r} model, "
                    f"not {config.mode!r}"
                )
    elif saved_config.is_file() and not config.overwrite:
        raise TrainError(
            f"{run}: holds a run already ({CONFIG_NAME}); pass --resume to continue it or "
            "--overwrite to replace it"
        )
    # every rank has looked at the folder before rank 0 changes it (same answer everywhere)
    ctx.barrier()
    if ctx.is_main:
        run.mkdir(parents=True, exist_ok=True)
        _clean_temporaries(run)
        if not config.resume:
            for name in (CONFIG_NAME, METRICS_NAME, LAST_NAME, BEST_NAME):
                (run / name).unlink(missing_ok=True)
            shutil.rmtree(run / TENSORBOARD_DIR, ignore_errors=True)
        _truncate_metrics(run, int(checkpoint["step"]) if checkpoint else 0)
        _write_json_atomic(saved_config, config.to_json() + "\n")
    ctx.barrier()
    return checkpoint


def _tensorboard(config: TrainConfig, ctx: DistributedContext) -> Any:
    """A SummaryWriter on rank 0 if torch.utils.tensorboard imports, else None (silently)."""
    if not ctx.is_main:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # noqa: BLE001 - tensorboard is optional; any import failure skips it
        return None
    return SummaryWriter(str(Path(config.out) / TENSORBOARD_DIR))


# ---------------------------------------------------------------------------------- RNG
def _rng_state(device: torch.device) -> dict[str, Any]:
    """This process's RNG states as plain tensors, lists and numbers."""
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [str(name), torch.from_numpy(keys.astype(np.int64)), int(pos)]
        + [int(has_gauss), float(cached)],
        "python": [int(version), list(internal), gauss_next],
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global stream, for user code
    random.seed(seed)


def _seed_worker(worker_id: int) -> None:
    """DataLoader worker init: numpy/python RNG from the worker's torch seed, 1 OpenCV thread."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002
    random.seed(seed)
    import cv2

    cv2.setNumThreads(1)


# ---------------------------------------------------------------------------------- data
def _loader_kwargs(config: TrainConfig, device: torch.device) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "num_workers": config.workers,
        "pin_memory": device.type == "cuda",
        "worker_init_fn": _seed_worker,
    }
    if config.workers > 0:
        import multiprocessing

        methods = multiprocessing.get_all_start_methods()
        # h5py (and numba's OpenMP) are not fork-safe: never fork workers.
        kwargs["multiprocessing_context"] = "forkserver" if "forkserver" in methods else "spawn"
        kwargs["persistent_workers"] = True
    return kwargs


def _datasets(config: TrainConfig) -> tuple[ShardDataset, ShardDataset | None]:
    train_set = ShardDataset(
        config.shards,
        config.train_split,
        height=config.height,
        augment=config.augment,
        crop=config.crop,
        seed=config.seed,
        locking=config.locking,
        num_classes=config.num_classes,
    )
    val_set = None
    if config.val_split is not None:
        try:
            split_shards(config.shards, config.val_split)
        except DataError:
            return train_set, None  # the shards have no such split: no validation
        val_set = ShardDataset(
            config.shards,
            config.val_split,
            height=config.height,
            locking=config.locking,
            num_classes=config.num_classes,
        )
    return train_set, val_set


# ------------------------------------------------------------------------------- the model
class _ParallelPair:
    """What the training steps see under DDP: ``.restorer`` / ``.segmenter`` are the DDP
    wrappers of the two networks (each has its own optimiser) and ``.num_classes`` the C."""

    def __init__(self, restorer: nn.Module, segmenter: nn.Module, num_classes: int) -> None:
        self.restorer = restorer
        self.segmenter = segmenter
        self.num_classes = num_classes


def _parts(model: nn.Module, mode: str) -> tuple[nn.Module | None, nn.Module]:
    """(restorer or None, segmenter) of a model of ``mode``."""
    if mode == "erfnet":
        return None, model
    return model.restorer, model.segmenter


def _adam(params: Any, lr: float, betas: tuple[float, float], eps: float, wd: float) -> Any:
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=wd)


# ----------------------------------------------------------------------------- validation
@torch.no_grad()
def _validate(
    model: nn.Module,
    loader: DataLoader,
    config: TrainConfig,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    channels_last: bool,
    ctx: DistributedContext,
) -> list[ConfusionMatrix]:
    """Confusion matrices on this rank's validation samples, one per iteration, all-reduced.

    The last entry is the prediction (last feedback iteration); modes without feedback have one.
    In the 20-class layout the void class is ignored and predictions take the 19 real classes.
    """
    ignore = IGNORE_INDEX if config.num_classes == 19 else 19
    iterations = config.iterations if isinstance(model, FeedbackSegmenter) else 1
    matrices = [ConfusionMatrix(EVAL_CLASSES, ignore) for _ in range(iterations)]
    autocast = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    was_training = model.training
    model.eval()
    try:
        for batch in loader:
            x = batch["distorted"].to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            label = batch["label"].to(device, non_blocking=True)
            with autocast:
                if isinstance(model, FeedbackSegmenter):
                    all_logits = model(x, iterations=config.iterations).logits
                elif isinstance(model, RestoreSegmenter):
                    all_logits = model(x).logits
                else:
                    all_logits = [model(x)]
            for matrix, logits in zip(matrices, all_logits, strict=True):
                pred = logits[:, :EVAL_CLASSES].argmax(1)
                try:
                    matrix.update(pred, label)
                except ValueError as error:
                    raise TrainError(
                        f"{config.shards} split {config.val_split!r}: {error}"
                    ) from None
    finally:
        model.train(was_training)
    for matrix in matrices:
        matrix.all_reduce()
    return matrices


def _sync_buffers(model: nn.Module, ctx: DistributedContext) -> None:
    """Rank 0's BatchNorm statistics on every rank (before validating with the bare model)."""
    if not ctx.distributed:
        return
    import torch.distributed as dist

    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


# ----------------------------------------------------------------------------------- train
def train(config: TrainConfig, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train a model as ``config`` says; see the module docstring for the files written.

    Args:
        config: the resolved configuration.
        log: progress messages (rank 0 only); default: print to stderr.

    Returns:
        What the run reached (on every rank).

    Raises:
        TrainError: RUN exists without --resume/--overwrite, --resume with a different config,
            labels out of range, a non-finite loss (the last good checkpoint is kept).
        DataError: missing or foreign shard folder, missing split.
        CheckpointError: an unreadable last.pt or one of another mode; a bad
            --pretrained-encoder file.
        ConfigError: bad values (raised when the config is built).
    """
    try:
        ctx = setup_distributed(config.device)
    except ValueError as error:
        raise TrainError(str(error)) from None
    try:
        with cuda_float32_precision(config.tf32):
            return _train(config, ctx, log)
    finally:
        ctx.close()


def _train(
    config: TrainConfig, ctx: DistributedContext, log: Callable[[str], None] | None
) -> TrainResult:
    def say(message: str) -> None:
        if ctx.is_main:
            (log or (lambda m: print(m, file=sys.stderr, flush=True)))(message)

    device = ctx.device
    run = Path(config.out)
    train_set, val_set = _datasets(config)  # DataError before anything is written
    checkpoint = _prepare_run_dir(config, ctx)
    channels_last = (
        config.channels_last if config.channels_last is not None else device.type == "cuda"
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes

    # ---- model, optimisers, schedulers (same construction order on a fresh start and resume)
    _seed_everything(config.seed)
    model = build_model(config.mode, config.num_classes, config.small)
    restorer, segmenter = _parts(model, config.mode)
    if config.pretrained_encoder is not None and checkpoint is None:
        for note in load_pretrained_encoder(segmenter, config.pretrained_encoder):
            say(f"note: {note}")
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt_s = _adam(
        segmenter.parameters(), config.lr_s, config.betas_s, config.eps_s, config.weight_decay_s
    )
    opt_r = None
    if restorer is not None:
        opt_r = _adam(
            restorer.parameters(), config.lr_r, config.betas_r, config.eps_r, config.weight_decay_r
        )
    sched_s = torch.optim.lr_scheduler.StepLR(
        opt_s, step_size=config.lr_s_decay_epochs, gamma=config.lr_s_decay
    )
    sched_r = None
    if opt_r is not None:
        sched_r = torch.optim.lr_scheduler.StepLR(
            opt_r, step_size=config.lr_r_decay_epochs, gamma=config.lr_r_decay
        )
    autocast_dtype, scaler = amp_settings(config, device)

    spe = steps_per_epoch(len(train_set), config.batch_size, ctx.world_size)
    total = config.max_steps if config.max_steps is not None else config.epochs * spe
    step, epoch, batch_in_epoch, best_miou = 0, 0, 0, None
    last_saved_step: int | None = None

    if checkpoint is not None:
        try:
            model.load_state_dict(checkpoint["model"])
            opt_s.load_state_dict(checkpoint["optimizers"]["s"])
            if opt_r is not None:
                opt_r.load_state_dict(checkpoint["optimizers"]["r"])
            sched_s.load_state_dict(checkpoint["schedulers"]["s"])
            if sched_r is not None:
                sched_r.load_state_dict(checkpoint["schedulers"]["r"])
            if scaler is not None and checkpoint.get("scaler"):
                scaler.load_state_dict(checkpoint["scaler"])
        except (KeyError, RuntimeError, ValueError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise CheckpointError(f"{run / LAST_NAME}: cannot resume from it ({first})") from None
        step, epoch = int(checkpoint["step"]), int(checkpoint["epoch"])
        batch_in_epoch = int(checkpoint.get("batch_in_epoch", 0))
        best_miou = checkpoint.get("best_miou")
        class_weights = checkpoint.get("class_weights")
        class_weights = None if class_weights is None else class_weights.float()
        states = checkpoint.get("rng") or []
        if len(states) == ctx.world_size:
            _set_rng_state(states[ctx.rank], device)
        else:  # resumed on another number of processes: fresh, distinct streams
            _seed_everything(config.seed + 1_000_003 * step + 7919 * ctx.rank)
        last_saved_step = step
        say(f"resuming {run / LAST_NAME} at step {step}/{total} (epoch {epoch})")
    else:
        class_weights = ctx.broadcast_object(_class_weights(config, say) if ctx.is_main else None)
        if ctx.rank:
            _seed_everything(config.seed + 7919 * ctx.rank)  # distinct dropout streams per rank

    # ---- DDP wrapping: R and S separately (two optimisers)
    if ctx.distributed:
        ids = [device.index] if device.type == "cuda" else None
        wrapped_s = DistributedDataParallel(segmenter, device_ids=ids)
        if restorer is None:
            step_model: Any = wrapped_s
        else:
            wrapped_r = DistributedDataParallel(restorer, device_ids=ids)
            step_model = _ParallelPair(wrapped_r, wrapped_s, config.num_classes)
    else:
        step_model = model

    seg_loss = build_seg_loss(config, class_weights)
    train_step = TRAIN_STEPS[config.mode]
    step_kwargs: dict[str, Any] = {"autocast_dtype": autocast_dtype, "scaler": scaler}
    if config.mode == "feedback":
        step_kwargs["iterations"] = config.iterations

    sampler = ResumableDistributedSampler(
        train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=config.seed
    )
    loader_kwargs = _loader_kwargs(config, device)
    # A private generator: creating loader iterators never touches the global torch RNG.
    loader = DataLoader(
        EpochIndexedDataset(train_set),
        batch_size=config.batch_size,
        sampler=sampler,
        drop_last=False,
        generator=torch.Generator().manual_seed(config.seed),
        **loader_kwargs,
    )
    val_loader = None
    if val_set is not None:
        val_loader = DataLoader(
            val_set,
            batch_size=config.batch_size,
            sampler=ShardedEvalSampler(len(val_set), ctx.world_size, ctx.rank),
            generator=torch.Generator().manual_seed(config.seed),
            **loader_kwargs,
        )
    writer = _tensorboard(config, ctx)
    say(
        f"training {config.mode} ({config.loss}, {config.num_classes} classes) on "
        f"{len(train_set)} samples at {train_set.image_size[0]}x{train_set.image_size[1]}, "
        f"{spe} steps/epoch, {total} steps, device {device}, world size {ctx.world_size}"
    )

    def payload(full: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mode": config.mode,
            "num_classes": config.num_classes,
            "small": config.small,
            "iterations": config.iterations,
            "model": export_state_dict(model),
            "config": config.to_dict(),
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "best_miou": best_miou,
            "image_size": list(train_set.image_size),
            "class_weights": None if class_weights is None else class_weights.clone(),
        }
        if full:
            data["optimizers"] = {"s": opt_s.state_dict()}
            data["schedulers"] = {"s": sched_s.state_dict()}
            if opt_r is not None and sched_r is not None:
                data["optimizers"]["r"] = opt_r.state_dict()
                data["schedulers"]["r"] = sched_r.state_dict()
            data["scaler"] = scaler.state_dict() if scaler is not None else None
        return data

    def save_last() -> None:
        nonlocal last_saved_step
        states = ctx.all_gather_object(_rng_state(device))  # a collective: every rank
        if ctx.is_main:
            data = payload(full=True)
            data["rng"] = states
            save_checkpoint(run / LAST_NAME, data)
        ctx.barrier()
        last_saved_step = step

    def validate(at_epoch: int) -> dict[str, Any] | None:
        nonlocal best_miou
        if val_loader is None:
            return None
        _sync_buffers(model, ctx)
        matrices = _validate(model, val_loader, config, device, autocast_dtype, channels_last, ctx)
        final = matrices[-1].as_dict()
        record = {
            "kind": "val",
            "step": step,
            "epoch": at_epoch,
            "split": config.val_split,
            "val_miou": final["miou"],
            "val_pixel_accuracy": final["pixel_accuracy"],
            "val_pixels": final["pixels"],
            "val_resolution": list(val_set.image_size),
            "per_class": final["per_class"],
        }
        if len(matrices) > 1:
            record["val_miou_per_iteration"] = [m.as_dict()["miou"] for m in matrices]
        miou = final["miou"]
        improved = miou is not None and (best_miou is None or miou > best_miou)
        if improved:
            best_miou = miou
        if ctx.is_main:
            _append_metrics(run, record)
            if writer is not None and miou is not None:
                writer.add_scalar("val/miou", miou, step)
            shown = "n/a" if miou is None else f"{100 * miou:.2f}"
            say(
                f"step {step}: val mIoU {shown} % on {config.val_split} at "
                f"{val_set.image_size[0]}x{val_set.image_size[1]}"
            )
            if improved:
                save_checkpoint(run / BEST_NAME, payload(full=False))
        ctx.barrier()
        return record

    # ---- the loop
    model.train()
    last_val: dict[str, Any] | None = None
    window: dict[str, float] = {"loss_seg": 0.0, "loss_l1": 0.0, "n": 0}
    window_start, window_samples = time.perf_counter(), 0
    while step < total:
        sampler.set_epoch(epoch)
        sampler.set_start(batch_in_epoch * config.batch_size)
        train_set.set_epoch(epoch)
        taken = 0
        for batch in loader:
            taken += 1
            x = batch["distorted"].to(device, non_blocking=True)
            clean = batch["clean"].to(device, non_blocking=True)
            label = batch["label"].to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
                clean = clean.contiguous(memory_format=torch.channels_last)
            result = train_step(
                step_model,
                x,
                None if config.mode == "erfnet" else clean,
                label,
                opt_r,
                opt_s,
                seg_loss,
                **step_kwargs,
            )
            step += 1
            step_epoch = epoch
            finite = all(math.isfinite(v) for v in result.values())
            if not ctx.all_true(finite):
                kept = (
                    f"{run / LAST_NAME} keeps step {last_saved_step}"
                    if last_saved_step
                    else "no checkpoint was written yet"
                )
                values = ", ".join(f"{k}={v:.4g}" for k, v in result.items())
                raise TrainError(
                    f"step {step}: the loss is not finite ({values}); training stopped, {kept}"
                )
            batch_in_epoch += 1
            window["loss_seg"] += result["loss_seg"]
            window["loss_l1"] += result["loss_l1"]
            window["n"] += 1
            window_samples += int(x.shape[0]) * ctx.world_size
            lr_s = opt_s.param_groups[0]["lr"]  # the rates this step used
            lr_r = None if opt_r is None else opt_r.param_groups[0]["lr"]
            end_of_epoch = batch_in_epoch >= spe
            if end_of_epoch:
                sched_s.step()
                if sched_r is not None:
                    sched_r.step()
                epoch += 1
                batch_in_epoch = 0
            done = step >= total
            if step % config.log_every == 0 or done:
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                record = {
                    "kind": "train",
                    "step": step,
                    "epoch": step_epoch,
                    "loss_seg": window["loss_seg"] / window["n"],
                    "loss_l1": window["loss_l1"] / window["n"],
                    "lr_s": lr_s,
                    "lr_r": lr_r,
                    "samples_per_s": window_samples / elapsed,
                }
                if ctx.is_main:
                    _append_metrics(run, record)
                    if writer is not None:
                        for key in ("loss_seg", "loss_l1", "lr_s", "samples_per_s"):
                            writer.add_scalar(f"train/{key}", record[key], step)
                    say(
                        f"step {step}/{total} epoch {step_epoch} loss_seg "
                        f"{record['loss_seg']:.4f} loss_l1 {record['loss_l1']:.4f} "
                        f"lr_s {record['lr_s']:.3g} {record['samples_per_s']:.1f} samples/s"
                    )
                window = {"loss_seg": 0.0, "loss_l1": 0.0, "n": 0}
                window_start, window_samples = time.perf_counter(), 0
            validated = False
            if (
                done
                or (config.val_every is not None and step % config.val_every == 0)
                or (config.val_every is None and end_of_epoch)
            ):
                last_val = validate(step_epoch) or last_val
                validated = val_loader is not None
            if done or validated or step % config.checkpoint_every == 0:
                save_last()
            if done or end_of_epoch:
                break
        if taken == 0:
            raise TrainError(f"{config.shards}: split {config.train_split!r} gave no batches")
    if writer is not None:
        writer.close()
    say(f"done: {step} steps; {run}")
    return TrainResult(run, step, epoch, best_miou, last_val, ctx.rank)
