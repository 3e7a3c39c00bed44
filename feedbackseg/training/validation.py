"""Validation during training: :func:`validate` (every mode) keeps ``best.pt``.

The segmentation modes validate by the mIoU of :func:`feedbackseg.evaluation.evaluate.evaluate` on
the bare model (every rank its share, the confusion matrices summed). The ``restore`` mode (R alone)
has no segmentation: :func:`validate_restoration` records R's PSNR gain and flow diagnostics
(:func:`feedbackseg.evaluation.restoration.restoration_metrics`) and keeps ``best.pt`` at the best
PSNR gain; rank 0 measures (the split is small) and every rank gets the record.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from feedbackseg.data.dataset import ShardDataset
from feedbackseg.devices.distributed import DistributedContext
from feedbackseg.evaluation.restoration import restoration_metrics
from feedbackseg.modes import mode_of
from feedbackseg.runs.rundir import TrainError, append_metrics
from feedbackseg.training.progress import Progress
from feedbackseg.training.train_state import TrainState, save_best

__all__ = ["validate", "validate_restoration"]


def _sync_buffers(model: nn.Module, ctx: DistributedContext) -> None:
    """Rank 0's BatchNorm statistics on every rank (before validating with the bare model)."""
    if not ctx.distributed:
        return
    import torch.distributed as dist

    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


@contextlib.contextmanager
def _channels_last_inputs(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Feed ``model`` channels-last inputs while the block runs (as the training steps do)."""
    if not enabled:
        yield
        return

    def to_channels_last(module: nn.Module, args: tuple, kwargs: dict) -> tuple:
        x = args[0].contiguous(memory_format=torch.channels_last)
        return (x, *args[1:]), kwargs

    handle = model.register_forward_pre_hook(to_channels_last, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def _evaluate(state: TrainState, val_set: ShardDataset) -> Any:
    """:func:`feedbackseg.evaluation.evaluate.evaluate` of the bare model on this rank's share of
    ``val_set``, in the training precision and memory format; the global RNG is left as it was
    (the evaluation loader draws its base seed from it) and the model back in train mode."""
    from feedbackseg.evaluation.evaluate import EvalError, evaluate

    config, device = state.config, state.device
    autocast = (
        torch.autocast(device_type=device.type, dtype=state.autocast_dtype)
        if state.autocast_dtype is not None
        else contextlib.nullcontext()
    )
    rng = torch.get_rng_state()
    try:
        with autocast, _channels_last_inputs(state.model, state.channels_last):
            return evaluate(
                state.model,
                val_set,
                config.iterations,
                device,
                config.batch_size,
                num_workers=config.workers,
            )
    except EvalError as error:
        reason = str(error).removeprefix(f"{val_set.root}: ")
        raise TrainError(f"{config.shards} split {config.val_split!r}: {reason}") from None
    finally:
        torch.set_rng_state(rng)
        state.model.train()


def validate(
    state: TrainState, val_set: ShardDataset | None, at_epoch: int, progress: Progress
) -> dict[str, Any] | None:
    """Evaluate on ``val_set``, log the val record, keep best.pt; the record (None: no split).

    Every rank calls it (the confusion matrices are summed over the ranks).
    """
    if val_set is None:
        return None
    config = state.config
    _sync_buffers(state.model, state.ctx)
    if not mode_of(config.mode).segmenter:  # R alone: validated by its restoration
        return validate_restoration(state, val_set, at_epoch, progress)
    result = _evaluate(state, val_set)
    final = result.confusion.as_dict()
    record = {
        "kind": "val",
        "step": state.step,
        "epoch": at_epoch,
        "split": config.val_split,
        "val_miou": final["miou"],
        "val_pixel_accuracy": final["pixel_accuracy"],
        "val_pixels": final["pixels"],
        "val_resolution": list(val_set.image_size),
        "per_class": final["per_class"],
    }
    if len(result.iteration_confusions) > 1:
        record["val_miou_per_iteration"] = [
            m.as_dict()["miou"] for m in result.iteration_confusions
        ]
    miou = final["miou"]
    improved = miou is not None and (state.best_miou is None or miou > state.best_miou)
    if improved:
        state.best_miou = miou
    if state.ctx.is_main:
        append_metrics(state.run, record)
        if progress.writer is not None and miou is not None:
            progress.writer.add_scalar("val/miou", miou, state.step)
        shown = "n/a" if miou is None else f"{100 * miou:.2f}"
        h, w = val_set.image_size
        progress.say(f"step {state.step}: val mIoU {shown} % on {config.val_split} at {h}x{w}")
        if improved:
            save_best(state)
    state.ctx.barrier()
    return record


def validate_restoration(
    state: TrainState, val_set: ShardDataset, at_epoch: int, progress: Progress
) -> dict[str, Any]:
    """Measure R on ``val_set``, log the val record, keep best.pt by the PSNR gain.

    The record: ``kind`` "val", ``step``, ``epoch``, ``split``, ``val_resolution`` and every key
    of :func:`~feedbackseg.evaluation.restoration.restoration_metrics` prefixed ``val_``
    (``val_psnr_gain_db`` chooses best.pt). The global RNG is left as it was and the model back in
    train mode.
    """
    config, ctx = state.config, state.ctx
    metrics: dict[str, Any] | None = None
    if ctx.is_main:
        rng = torch.get_rng_state()
        try:
            state.model.eval()
            metrics = restoration_metrics(state.model, val_set)
        finally:
            torch.set_rng_state(rng)
            state.model.train()
    metrics = ctx.broadcast_object(metrics)
    record: dict[str, Any] = {
        "kind": "val",
        "step": state.step,
        "epoch": at_epoch,
        "split": config.val_split,
        "val_resolution": list(val_set.image_size),
        **{f"val_{k}": v for k, v in metrics.items()},
    }
    gain = metrics.get("psnr_gain_db")
    improved = gain is not None and (
        state.best_psnr_gain_db is None or gain > state.best_psnr_gain_db
    )
    if improved:
        state.best_psnr_gain_db = gain
    if ctx.is_main:
        append_metrics(state.run, record)
        h, w = val_set.image_size
        epe = metrics.get("flow_epe_smooth_px")
        flow = "" if epe is None else f", flow EPE {epe:.2f} px vs smoothed inverse"
        progress.say(
            f"step {state.step}: val PSNR {metrics['psnr_restored']:.2f} dB (input "
            f"{metrics['psnr_distorted']:.2f}, gain {gain:+.3f}){flow} on {config.val_split} "
            f"at {h}x{w}"
        )
        if improved:
            save_best(state)
    ctx.barrier()
    return record
