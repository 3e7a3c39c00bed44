"""What a training run carries from step to step: :class:`TrainState`, and its checkpoints.

A :class:`TrainState` holds the model and its two parts (restorer R, segmenter S), the two Adam
optimisers and their StepLR schedulers, the GradScaler, the counters (step, epoch, batch in the
epoch), the best validation mIoU and the class weights. :func:`build_state` makes one in the same
order on a fresh start and on a resume (so that the global RNG streams line up), restores a
checkpoint into it, and wraps R and S in DistributedDataParallel under ``torchrun``.

Checkpoints: :func:`checkpoint_payload` is the dict written to ``last.pt`` (full: optimisers,
schedulers, scaler, and the RNG states of every rank) and ``best.pt`` (weights only).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from feedbackseg.config import TrainConfig
from feedbackseg.data.dataset import pixel_counts
from feedbackseg.devices.distributed import DistributedContext
from feedbackseg.devices.precision import amp_settings
from feedbackseg.label_layout import label_layout
from feedbackseg.models import build_model, model_parts
from feedbackseg.modes import mode_of
from feedbackseg.runs.checkpoints import (
    CheckpointError,
    export_state_dict,
    load_pretrained_encoder,
    load_pretrained_restorer,
    save_checkpoint,
)
from feedbackseg.runs.rundir import BEST_NAME, LAST_NAME
from feedbackseg.training.losses import BMVC2020_CLASS_WEIGHTS, class_balanced_weights

__all__ = [
    "TrainState",
    "build_state",
    "checkpoint_payload",
    "initial_class_weights",
    "save_best",
    "save_last",
    "seed_everything",
]

#: Offsets of the per-rank and per-step reseeding (distinct dropout streams).
_RANK_SEED_STRIDE = 7919
_STEP_SEED_STRIDE = 1_000_003


@dataclass
class TrainState:
    """The mutable state of one training process.

    Attributes:
        config: the run's configuration.
        ctx: rank, world size and device of this process.
        model: the bare network (never the DDP wrapper).
        restorer: R (None in erfnet mode); segmenter: S.
        step_model: what the training steps call (``model``, or the DDP wrappers).
        opt_s, opt_r: S's and R's Adam (``opt_r`` None without R).
        sched_s, sched_r: their StepLR schedules, stepped at the end of every epoch.
        scaler: the fp16 GradScaler (None otherwise); autocast_dtype: autocast's dtype or None.
        channels_last: whether inputs and weights are channels-last (NHWC).
        image_size: (H, W) [px] of the training samples.
        class_weights: (C,) float32 CB-iFL weights, or None for unit weights.
        step: optimiser steps taken; epoch: epochs completed; batch_in_epoch: batches taken in
            the current epoch.
        best_miou: best validation mIoU so far (None before any, and in the restore mode).
        best_psnr_gain_db: the restore mode's best validation PSNR gain of R [dB] (what its
            best.pt is chosen by).
        last_saved_step: the step of the newest last.pt (None before the first).
    """

    config: TrainConfig
    ctx: DistributedContext
    model: nn.Module
    restorer: nn.Module | None
    segmenter: nn.Module | None
    opt_s: torch.optim.Optimizer | None
    opt_r: torch.optim.Optimizer | None
    sched_s: Any
    sched_r: Any
    scaler: Any
    autocast_dtype: torch.dtype | None
    channels_last: bool
    image_size: tuple[int, int]
    step_model: Any = None
    class_weights: torch.Tensor | None = None
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_miou: float | None = None
    best_psnr_gain_db: float | None = None
    last_saved_step: int | None = None

    @property
    def run(self) -> Path:
        """The run folder."""
        return Path(self.config.out)

    @property
    def device(self) -> torch.device:
        """This process's device."""
        return self.ctx.device

    def learning_rates(self) -> tuple[float, float | None]:
        """(S's, R's or None) learning rates that the next step uses."""
        lr_r = None if self.opt_r is None else self.opt_r.param_groups[0]["lr"]
        lr_s = None if self.opt_s is None else self.opt_s.param_groups[0]["lr"]
        return lr_s, lr_r

    def end_epoch(self) -> None:
        """Step the schedulers and move to the next epoch."""
        if self.sched_s is not None:
            self.sched_s.step()
        if self.sched_r is not None:
            self.sched_r.step()
        self.epoch += 1
        self.batch_in_epoch = 0


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


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's legacy global stream (for user code) and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global stream, for user code
    random.seed(seed)


# ------------------------------------------------------------------------- class weights
def initial_class_weights(config: TrainConfig, log: Callable[[str], None]) -> torch.Tensor | None:
    """(C,) float32 CB weights of the config (None for unit weights).

    ``shards``: class-balanced weights of the training split's pixel counts (the void class of
    the 20-class layout gets weight 0, SPEC 3); ``bmvc2020``: the fixed constants.
    """
    if (
        config.loss != "cb-ifl"
        or config.class_weights == "none"
        or not mode_of(config.mode).segmenter
    ):
        return None
    if config.class_weights == "bmvc2020":
        weights = BMVC2020_CLASS_WEIGHTS.clone()
        return weights[: config.num_classes].clone()  # 20: with the void class at weight 0
    log(f"counting class pixels of split {config.train_split!r} for the class weights ...")
    counts = pixel_counts(
        config.shards, config.train_split, config.num_classes, locking=config.locking
    )
    void = label_layout(config.num_classes).void_class
    if void is not None:
        counts[void] = 0  # the void class carries weight 0 (the original's CB-iFL)
    return class_balanced_weights(counts, beta=config.beta)


# ---------------------------------------------------------------------------- the state
class _ParallelPair:
    """What the training steps see under DDP: ``.restorer`` / ``.segmenter`` are the DDP
    wrappers of the two networks (each has its own optimiser) and ``.num_classes`` the C."""

    def __init__(self, restorer: nn.Module, segmenter: nn.Module, num_classes: int) -> None:
        self.restorer = restorer
        self.segmenter = segmenter
        self.num_classes = num_classes


def _adam(params: Any, lr: float, betas: tuple[float, float], eps: float, wd: float) -> Any:
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=wd)


def _new_state(
    config: TrainConfig,
    ctx: DistributedContext,
    image_size: tuple[int, int],
    fresh: bool,
    say: Callable[[str], None],
) -> TrainState:
    """Seed, build the model, optimisers and schedulers (the same order on every start)."""
    device = ctx.device
    channels_last = (
        config.channels_last if config.channels_last is not None else device.type == "cuda"
    )
    seed_everything(config.seed)
    model = build_model(
        config.mode, config.num_classes, config.small, config.flow_init, config.restorer_bn
    )
    restorer, segmenter = model_parts(model)
    if config.pretrained_encoder is not None and fresh:
        for note in load_pretrained_encoder(segmenter, config.pretrained_encoder):
            say(f"note: {note}")
    if config.pretrained_restorer is not None and fresh:
        for note in load_pretrained_restorer(restorer, config.pretrained_restorer):
            say(f"note: {note}")
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    c = config
    opt_s = sched_s = None
    if segmenter is not None:
        opt_s = _adam(segmenter.parameters(), c.lr_s, c.betas_s, c.eps_s, c.weight_decay_s)
    opt_r = None
    if restorer is not None:
        opt_r = _adam(restorer.parameters(), c.lr_r, c.betas_r, c.eps_r, c.weight_decay_r)
    step_lr = torch.optim.lr_scheduler.StepLR
    if opt_s is not None:
        sched_s = step_lr(opt_s, step_size=c.lr_s_decay_epochs, gamma=c.lr_s_decay)
    sched_r = None
    if opt_r is not None:
        sched_r = step_lr(opt_r, step_size=c.lr_r_decay_epochs, gamma=c.lr_r_decay)
    autocast_dtype, scaler = amp_settings(config, device)
    return TrainState(
        config, ctx, model, restorer, segmenter, opt_s, opt_r, sched_s, sched_r, scaler,
        autocast_dtype, channels_last, tuple(image_size),
    )  # fmt: skip


def _restore(state: TrainState, checkpoint: dict[str, Any]) -> None:
    """Load a last.pt into ``state``: weights, optimisers, schedulers, scaler, counters, RNG."""
    try:
        state.model.load_state_dict(checkpoint["model"])
        if state.opt_s is not None:
            state.opt_s.load_state_dict(checkpoint["optimizers"]["s"])
        if state.opt_r is not None:
            state.opt_r.load_state_dict(checkpoint["optimizers"]["r"])
        if state.sched_s is not None:
            state.sched_s.load_state_dict(checkpoint["schedulers"]["s"])
        if state.sched_r is not None:
            state.sched_r.load_state_dict(checkpoint["schedulers"]["r"])
        if state.scaler is not None and checkpoint.get("scaler"):
            state.scaler.load_state_dict(checkpoint["scaler"])
    except (KeyError, RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise CheckpointError(f"{state.run / LAST_NAME}: cannot resume from it ({first})") from None
    state.step, state.epoch = int(checkpoint["step"]), int(checkpoint["epoch"])
    state.batch_in_epoch = int(checkpoint.get("batch_in_epoch", 0))
    state.best_miou = checkpoint.get("best_miou")
    state.best_psnr_gain_db = checkpoint.get("best_psnr_gain_db")
    weights = checkpoint.get("class_weights")
    state.class_weights = None if weights is None else weights.float()
    ctx = state.ctx
    states = checkpoint.get("rng") or []
    if len(states) == ctx.world_size:
        _set_rng_state(states[ctx.rank], ctx.device)
    else:  # resumed on another number of processes: fresh, distinct streams
        seed_everything(
            state.config.seed + _STEP_SEED_STRIDE * state.step + _RANK_SEED_STRIDE * ctx.rank
        )
    state.last_saved_step = state.step


def _wrap_parallel(state: TrainState) -> Any:
    """The model the training steps call: DDP wrappers of R and S (separately) under torchrun."""
    if not state.ctx.distributed:
        return state.model
    device = state.device
    ids = [device.index] if device.type == "cuda" else None
    if state.segmenter is None:  # the restore mode: R alone
        return _ParallelPair(
            DistributedDataParallel(state.restorer, device_ids=ids), None, state.config.num_classes
        )
    wrapped_s = DistributedDataParallel(state.segmenter, device_ids=ids)
    if state.restorer is None:
        return wrapped_s
    wrapped_r = DistributedDataParallel(state.restorer, device_ids=ids)
    return _ParallelPair(wrapped_r, wrapped_s, state.config.num_classes)


def build_state(
    config: TrainConfig,
    ctx: DistributedContext,
    image_size: tuple[int, int],
    checkpoint: dict[str, Any] | None,
    say: Callable[[str], None],
) -> TrainState:
    """The state a run starts from: fresh, or restored from ``checkpoint`` (a last.pt).

    Args:
        config: the run's configuration.
        ctx: this process's rank, world size and device.
        image_size: (H, W) [px] of the training samples (stored in the checkpoints).
        checkpoint: the last.pt to resume from, or None for a fresh start.
        say: progress messages (rank 0 prints them).

    Raises:
        CheckpointError: a last.pt that does not fit the model; a bad pretrained encoder.
    """
    state = _new_state(config, ctx, image_size, checkpoint is None, say)
    if checkpoint is not None:
        _restore(state, checkpoint)
    else:
        weights = initial_class_weights(config, say) if ctx.is_main else None
        state.class_weights = ctx.broadcast_object(weights)
        if ctx.rank:
            seed_everything(config.seed + _RANK_SEED_STRIDE * ctx.rank)  # distinct dropout
    state.step_model = _wrap_parallel(state)
    return state


# --------------------------------------------------------------------------- checkpoints
def checkpoint_payload(state: TrainState, full: bool) -> dict[str, Any]:
    """The checkpoint dict of ``state``: weights, config, counters, class weights; with
    ``full`` also the optimisers, schedulers and scaler (what a resume needs)."""
    config = state.config
    data: dict[str, Any] = {
        "mode": config.mode,
        "num_classes": config.num_classes,
        "small": config.small,
        "iterations": config.iterations,
        "model": export_state_dict(state.model),
        "config": config.to_dict(),
        "step": state.step,
        "epoch": state.epoch,
        "batch_in_epoch": state.batch_in_epoch,
        "best_miou": state.best_miou,
        "image_size": list(state.image_size),
        "class_weights": None if state.class_weights is None else state.class_weights.clone(),
    }
    if not mode_of(config.mode).segmenter:  # R alone: its best restoration
        data["best_psnr_gain_db"] = state.best_psnr_gain_db
    if full:
        data["optimizers"], data["schedulers"] = {}, {}
        if state.opt_s is not None and state.sched_s is not None:
            data["optimizers"]["s"] = state.opt_s.state_dict()
            data["schedulers"]["s"] = state.sched_s.state_dict()
        if state.opt_r is not None and state.sched_r is not None:
            data["optimizers"]["r"] = state.opt_r.state_dict()
            data["schedulers"]["r"] = state.sched_r.state_dict()
        data["scaler"] = state.scaler.state_dict() if state.scaler is not None else None
    return data


def save_last(state: TrainState) -> None:
    """Write ``RUN/last.pt`` with every rank's RNG state (a collective: call on every rank)."""
    ctx = state.ctx
    states = ctx.all_gather_object(_rng_state(state.device))
    if ctx.is_main:
        data = checkpoint_payload(state, full=True)
        data["rng"] = states
        save_checkpoint(state.run / LAST_NAME, data)
    ctx.barrier()
    state.last_saved_step = state.step


def save_best(state: TrainState) -> None:
    """Write ``RUN/best.pt`` (weights and counters; rank 0 only)."""
    save_checkpoint(state.run / BEST_NAME, checkpoint_payload(state, full=False))
