"""Start-up checks of a training run that need the shards: the validation split and the memory
of a batch. They run before the run folder is touched, so a refused start writes nothing.

No torch at import time.
"""

from __future__ import annotations

from feedbackseg.config import ConfigError, TrainConfig
from feedbackseg.data.dataset import split_names
from feedbackseg.devices.memory import memory_limit

__all__ = [
    "BATCH_BYTES_PER_PIXEL",
    "batch_bytes",
    "check_batch_memory",
    "check_val_split",
]

#: Bytes one training sample takes per pixel of the training size while the loader builds a
#: batch: the resized uint8 images (3 + 3) and label (1), the float32 (3, H, W) tensors of the
#: distorted and clean images (24) and the int64 label (8), then the same tensors again in the
#: collated batch (32). The networks' activations come on top (several times more).
BATCH_BYTES_PER_PIXEL = 71


def batch_bytes(image_size: tuple[int, int], batch_size: int) -> int:
    """Lower bound of the memory [bytes] of one batch at ``image_size`` (H, W) [px]: the
    samples alone (:data:`BATCH_BYTES_PER_PIXEL`), without the networks' activations."""
    h, w = image_size
    return int(h) * int(w) * BATCH_BYTES_PER_PIXEL * int(batch_size)


def _gb(value: float) -> str:
    return f"{value / 1e9:.1f} GB"


def check_batch_memory(
    config: TrainConfig, image_size: tuple[int, int], limit: int | None = None
) -> None:
    """Refuse a training size whose batches cannot fit in memory, before anything is written.

    Args:
        config: the run's config (``height`` and ``batch_size`` are named in the error).
        image_size: (H, W) [px] of the training samples.
        limit: memory limit [bytes]; None: :func:`feedbackseg.devices.memory.memory_limit` (the
            smallest of the physical memory, ``ulimit -v`` and the cgroup's limit).

    Raises:
        ConfigError: (key ``height``) when :func:`batch_bytes` exceeds the limit; the message
            gives the estimate and the limit.
    """
    if limit is None:
        known = memory_limit("cpu")
        limit, words = known if known is not None else (None, "")
    else:
        words = f"this machine's {_gb(limit)}"
    need = batch_bytes(image_size, config.batch_size)
    if limit is None or need <= limit:
        return
    h, w = image_size
    given = "the stored size" if config.height is None else str(config.height)
    raise ConfigError(
        f"{given} gives {h}x{w} px samples: a batch of {config.batch_size} needs about "
        f"{_gb(need)} of memory for the images alone, more than {words}; "
        "use a smaller height or batch size",
        "height",
    )


def check_val_split(config: TrainConfig) -> bool:
    """Whether to validate: ``config.val_split`` is a split of the shards.

    The default split name ``val`` may be absent (then no validation and no best.pt, which the
    caller should say); any other name must be one of the shards' splits.

    Raises:
        ConfigError: (key ``val_split``) a split the shards do not have, naming theirs.
        DataError: no manifest in ``config.shards``.
    """
    if config.val_split is None:
        return False
    known = split_names(config.shards)
    if config.val_split in known:
        return True
    if config.val_split == "val":
        return False
    raise ConfigError(
        f"no split {config.val_split!r} in {config.shards} (the shards hold: "
        f"{', '.join(known)}; 'none' turns validation off)",
        "val_split",
    )
