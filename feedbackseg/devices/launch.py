"""The ``torchrun`` launch of this process, read from its environment without importing torch.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; a plain launch sets none and is
rank 0 of a world of one. :func:`feedbackseg.devices.distributed.setup_distributed` joins the
process group from these; the study (torch-free until it trains) asks :func:`is_rank_zero` who
writes its files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["Launch", "is_rank_zero", "launch"]


@dataclass(frozen=True)
class Launch:
    """The launch environment: ``world_size`` processes, this one ``rank`` (``local_rank`` on
    its machine)."""

    world_size: int
    rank: int
    local_rank: int


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def launch() -> Launch:
    """This process's launch, from ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (defaults 1, 0, 0).

    Raises:
        ValueError: a variable that is set but not an integer (named in the message).
    """
    return Launch(_env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0))


def is_rank_zero() -> bool:
    """Whether this process is rank 0 of its launch (or not launched by torchrun at all)."""
    return launch().rank == 0
