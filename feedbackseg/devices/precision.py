"""Numeric precision of training: mixed precision (autocast) and TF32 on CUDA.

The spatial-feedback method feeds R the difference of two logit maps, so it is sensitive to
rounding. Measured at initialisation (``benchmarks/bench_feedback_step.py``; TF32 emulated on
the CPU), the rms rounding noise of S's train-mode logits is 1.7e-4 in float32, 0.16 with
TF32 convolutions and 0.29 in bf16, against logits of rms 0.35 and a t = 3 feedback signal of
rms 0.34. Training is therefore float32 by default on every device: no autocast, and on CUDA
no TF32 (which PyTorch otherwise enables for cuDNN convolutions). ``--tf32`` and ``--amp``
trade that for speed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from feedbackseg.config import TrainConfig

__all__ = ["amp_settings", "cuda_float32_precision"]


def amp_settings(
    config: TrainConfig, device: torch.device
) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """(autocast dtype or None, GradScaler or None) for ``config`` on ``device``.

    Off unless ``config.amp``: then bf16 where supported (the CPU, recent GPUs), else fp16 with
    a GradScaler. Decided without touching CUDA when off.
    """
    if not config.amp:
        return None, None
    if device.type != "cuda":
        return torch.bfloat16, None  # CPU autocast supports bf16 only
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


def _has_precision_api() -> bool:
    """torch >= 2.9 sets TF32 per backend with ``fp32_precision`` ("ieee" or "tf32"); mixing it
    with the legacy ``allow_tf32`` flags is an error there."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    return conv is not None and hasattr(conv, "fp32_precision")


@contextlib.contextmanager
def cuda_float32_precision(tf32: bool) -> Iterator[None]:
    """Within the block, CUDA float32 convolutions and matmuls use TF32 only if ``tf32``;
    the previous settings are restored on exit. Harmless without a GPU (flags only)."""
    if _has_precision_api():
        conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
        saved = (conv.fp32_precision, matmul.fp32_precision)
        mode = "tf32" if tf32 else "ieee"
        conv.fp32_precision = matmul.fp32_precision = mode
        try:
            yield
        finally:
            conv.fp32_precision, matmul.fp32_precision = saved
    else:  # pragma: no cover - torch < 2.9
        saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
