"""Memory at inference (``fbseg eval``, ``fbseg predict``): refuse an input too large for this
machine up front, and recognise an out-of-memory error whatever raised it.

The estimate (:func:`inference_bytes`) is the networks' activations of one no-grad forward pass,
per pixel of the network input and image: :data:`ERFNET_BYTES_PER_PIXEL` for the segmenter,
``RESTORER_BYTES_PER_PIXEL + RESTORER_BYTES_PER_PIXEL_PER_WIDTH * base_width`` for the
restorer; the restore-seg model peaks at the larger of the two (no-grad: the restorer's
activations are freed before the segmenter runs), the feedback model at their sum (the restorer
runs again beside the segmenter's logits). The constants are the growth of the peak resident
memory (``VmHWM``) measured on the CPU with PyTorch 2.13 over 256x512 to 1024x512 px inputs
(T = 3), rounded up by about 25 %: ERFNet 450-560 B/px; the restorer 390 B/px at base width 8
(``--small``) and 2030 B/px at 64; the feedback model 1070-1140 and 2360-2900 B/px.

The limit (:func:`memory_limit`) is what this process may use: on a CUDA device its total
memory; on the CPU the smallest of the physical memory (``os.sysconf``), the address-space limit
(``ulimit -v``, RLIMIT_AS) and the cgroup's memory limit (``memory.max``), each named in the
refusal.

No torch at import time.
"""

from __future__ import annotations

import errno
import os
import re
import resource
from pathlib import Path
from typing import Any

__all__ = [
    "ERFNET_BYTES_PER_PIXEL",
    "RESTORER_BYTES_PER_PIXEL",
    "RESTORER_BYTES_PER_PIXEL_PER_WIDTH",
    "bytes_per_pixel",
    "inference_bytes",
    "inference_too_large",
    "is_out_of_memory",
    "memory_limit",
    "out_of_memory_detail",
    "physical_memory_bytes",
]

#: ERFNet's activations at inference [bytes per input pixel].
ERFNET_BYTES_PER_PIXEL = 750
#: The restorer's activations at inference: this [bytes/px] plus the next times its base width.
RESTORER_BYTES_PER_PIXEL = 250
RESTORER_BYTES_PER_PIXEL_PER_WIDTH = 35
#: The cgroup v2 memory limit of this process (a container's, a SLURM job's).
_CGROUP_LIMIT = Path("/sys/fs/cgroup/memory.max")


def physical_memory_bytes() -> int | None:
    """This machine's physical memory [bytes], or None where the platform does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _gb(value: float) -> str:
    return f"{value / 1e9:.1f} GB"


def bytes_per_pixel(model: Any) -> int:
    """Activations of ``model`` (a network of :func:`feedbackseg.models.build_model`) at
    inference [bytes per pixel of one input image]; see the module docstring."""
    from feedbackseg.models import model_parts

    restorer, segmenter = model_parts(model)
    seg = ERFNET_BYTES_PER_PIXEL if segmenter is not None else 0
    if restorer is None:
        return seg
    width = int(restorer.last.in_channels)  # the U-Net's first level
    res = RESTORER_BYTES_PER_PIXEL + RESTORER_BYTES_PER_PIXEL_PER_WIDTH * width
    feedback = type(model).__name__ == "FeedbackSegmenter"
    return res + seg if feedback else max(res, seg)


def inference_bytes(model: Any, size: tuple[int, int], batch_size: int = 1) -> int:
    """Estimated memory [bytes] of one forward pass of ``model`` on a batch of ``size`` (H, W)
    [px] images: :func:`bytes_per_pixel` x H x W x batch, plus the float32 input."""
    pixels = int(size[0]) * int(size[1]) * int(batch_size)
    return pixels * (bytes_per_pixel(model) + 12)


def _cgroup_limit() -> int | None:
    try:
        text = _CGROUP_LIMIT.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": none


def memory_limit(device: Any = "cpu") -> tuple[int, str] | None:
    """(bytes, words naming it) of the memory this process may use on ``device``, or None
    where nothing says.

    CUDA: the device's total memory. CPU: the smallest of the physical memory, the
    address-space limit (RLIMIT_AS) and the cgroup's ``memory.max``.
    """
    if getattr(device, "type", str(device)).startswith("cuda"):
        import torch

        total = torch.cuda.get_device_properties(device).total_memory
        return int(total), f"the {_gb(total)} of {device}"
    limits = []
    physical = physical_memory_bytes()
    if physical is not None:
        limits.append((physical, f"this machine's {_gb(physical)} of memory"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft not in (resource.RLIM_INFINITY, -1) and soft > 0:
        limits.append((int(soft), f"the {_gb(soft)} address-space limit (ulimit -v)"))
    cgroup = _cgroup_limit()
    if cgroup is not None:
        limits.append((cgroup, f"the {_gb(cgroup)} memory limit of this cgroup"))
    return min(limits) if limits else None


def inference_too_large(
    model: Any, size: tuple[int, int], batch_size: int = 1, device: Any = "cpu"
) -> str | None:
    """Why a forward pass of ``model`` on a batch of ``size`` (H, W) [px] images cannot fit, or
    None.

    Returns:
        ``"needs about X GB of memory for the NETWORK network at inference, more than LIMIT"``
        when :func:`inference_bytes` exceeds :func:`memory_limit`; the caller names the size.
    """
    limit = memory_limit(device)
    need = inference_bytes(model, size, batch_size)
    if limit is None or need <= limit[0]:
        return None
    return (
        f"needs about {_gb(need)} of memory for the {type(model).__name__} network at "
        f"inference, more than {limit[1]}"
    )


#: What PyTorch (CPU allocator, CUDA) and OpenCV say when an allocation fails.
_OOM_TEXTS = ("can't allocate memory", "out of memory", "Insufficient memory")
_TRIED = re.compile(r"[Tt]ried to allocate ([0-9.]+ ?[KMGT]i?B|\d+ bytes)")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation that failed: MemoryError, torch.OutOfMemoryError,
    the CPU allocator's RuntimeError, OpenCV's "Insufficient memory"."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    if isinstance(error, OSError):
        return error.errno == errno.ENOMEM
    return any(marker in str(error) for marker in _OOM_TEXTS)


def out_of_memory_detail(error: BaseException) -> str:
    """``"tried to allocate 0.5 GB"`` from the error's text, or ``""`` where it does not say."""
    match = _TRIED.search(str(error))
    if match is None:
        return ""
    amount = match.group(1)
    if amount.endswith(" bytes"):
        amount = _gb(int(amount.split()[0]))
    return f"tried to allocate {amount}"
