"""Data for the networks: turbsim shards as a torch :class:`ShardDataset`, online turbulence,
DataLoader workers that die with their trainer, and the Cityscapes class names and colours.

``from feedbackseg.data import ShardDataset`` is the documented entry point; it is loaded on first
use, so importing this package (e.g. for the class table) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module of this room that defines it (loaded on first use, PEP 562).
_EXPORTS = {
    name: "feedbackseg.data.dataset"
    for name in ("ShardDataset", "pixel_counts", "split_names", "split_shards", "steps_per_epoch")
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'feedbackseg.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
