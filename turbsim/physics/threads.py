"""The size of this process's thread pools for turbsim's numpy/scipy work (noise, FFTs, blur).

One setting per process (a worker of ``turbsim generate`` sets it to cores / workers); results
never depend on it. The Numba warp has its own setting
(:func:`turbsim.physics.warp.set_num_threads`).
"""

from __future__ import annotations

import os

_threads = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def set_num_threads(n: int) -> None:
    """Threads used for noise drawing, FFTs and the blur in this process (>= 1)."""
    global _threads
    if int(n) < 1:
        raise ValueError(f"number of threads must be >= 1, got {n!r}")
    _threads = int(n)


def get_num_threads() -> int:
    """Threads used for noise drawing, FFTs and the blur in this process."""
    return _threads
