"""Trained networks at inference: a trainer checkpoint read into its network, what the checkpoint
says about how to run it, and the predicted class ids (shared by ``fbseg eval``, ``fbseg
predict`` and the trainer's validation).

The networks run through :func:`feedbackseg.models.infer` (one signature for the three model
kinds); :func:`run_model` is its (logits, restored) form. Predictions are taken among the 19
evaluated Cityscapes classes (:data:`turbsim.shards.schema.NUM_CLASSES`): the void logit of the
original's 20-class layout is never predicted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from feedbackseg.devices.distributed import resolve_device
from feedbackseg.devices.memory import inference_too_large
from feedbackseg.errors import EvalError
from feedbackseg.models import ITERATIONS, ERFNet, infer
from feedbackseg.runs.checkpoints import CheckpointError, load_checkpoint, model_from_checkpoint
from turbsim.shards.schema import NUM_CLASSES

__all__ = [
    "DEFAULT_ITERATIONS",
    "EvalError",
    "check_inference_memory",
    "checkpoint_height",
    "checkpoint_mode",
    "checkpoint_iterations",
    "load_model",
    "predicted_ids",
    "run_model",
    "size_multiple",
]

#: Feedback iterations T when a checkpoint does not say (the original's T).
DEFAULT_ITERATIONS = ITERATIONS


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """A trainer checkpoint's network, in eval mode on ``device``, and the checkpoint dict.

    Args:
        path: a checkpoint written by the trainer (``RUN/best.pt``, ``RUN/last.pt``).
        device: "cpu", "cuda[:k]", "auto" or a torch.device
            (:func:`feedbackseg.devices.distributed.resolve_device`).

    Raises:
        CheckpointError: missing, unreadable or foreign file (one line naming it).
        DeviceError: the device does not exist on this machine.
    """
    try:
        checkpoint = load_checkpoint(path, map_location="cpu")
    except CheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 - e.g. KeyError from torch's unpickler on junk
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({type(error).__name__})"
        ) from None
    model = model_from_checkpoint(checkpoint, path)
    return model.to(resolve_device(device)).eval(), checkpoint


def check_inference_memory(
    model: nn.Module,
    size: tuple[int, int],
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    height: int | None = None,
) -> None:
    """Refuse, before any work, a forward pass on batches of ``size`` (H, W) [px] that cannot
    fit in the memory of ``device`` (:func:`feedbackseg.devices.memory.inference_too_large`).

    Args:
        height: the height asked for [px] (named in the message; None: the stored size).

    Raises:
        EvalError: (key ``height``) the estimate and the limit, in one line.
    """
    reason = inference_too_large(model, size, batch_size, resolve_device(device))
    if reason is not None:
        given = "the stored size" if height is None else str(height)
        raise EvalError(
            f"{given} gives {size[0]}x{size[1]} px images: a batch of {batch_size} {reason}; "
            "use a smaller --height or --batch-size",
            key="height",
        )


def _config(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
    config = checkpoint.get("config")
    return config if isinstance(config, Mapping) else {}


def checkpoint_mode(path: str | os.PathLike) -> str:
    """The training mode of a trainer checkpoint ("erfnet", "restore-seg", "feedback",
    "restore").

    Raises:
        CheckpointError: missing, unreadable or foreign file.
    """
    return str(load_model(path, "cpu")[1]["mode"])


def checkpoint_height(checkpoint: Mapping[str, Any]) -> int | None:
    """The training height [px] stored in a checkpoint's config (None: the stored size)."""
    height = _config(checkpoint).get("height")
    return None if height is None else int(height)


def checkpoint_iterations(checkpoint: Mapping[str, Any]) -> int:
    """Feedback iterations T of a checkpoint (config, then top level, then 3)."""
    value = _config(checkpoint).get("iterations", checkpoint.get("iterations"))
    return DEFAULT_ITERATIONS if value is None else int(value)


def size_multiple(model: nn.Module) -> int:
    """Image sides must be multiples of this [px]: 8 for ERFNet alone, 16 with the restorer."""
    return 8 if isinstance(model, ERFNet) else 16


def run_model(
    model: nn.Module, distorted: torch.Tensor, iterations: int = DEFAULT_ITERATIONS
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-iteration logits and restored images of any of the three model kinds.

    Args:
        model: see :func:`feedbackseg.models.infer`.
        distorted: network input (B, 3, H, W) in [0, 1].
        iterations: feedback iterations T (feedback models only).

    Returns:
        (logits, restored): logits a list of (B, C, H, W), one per iteration, the last being the
        prediction; restored a list of (B, 3, H, W) in the same order, empty without a restorer.
    """
    out = infer(model, distorted, iterations)
    return out.logits, out.restored


def predicted_ids(logits: torch.Tensor) -> torch.Tensor:
    """Class ids (B, H, W) int64 among the 19 evaluated classes (a void logit is never taken).

    Args:
        logits: (B, C, H, W) with C = 19, or 20 in the original's layout (class 19 = void).
    """
    return logits[:, :NUM_CLASSES].argmax(1)
