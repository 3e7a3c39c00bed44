"""Values for strict JSON: NaN and infinities become null.

``json.dumps`` writes ``NaN`` and ``Infinity``, which strict parsers (and ``jq``, JavaScript)
refuse; an mIoU over no pixels or a PSNR gain of a perfect restoration is such a value. Every
JSON file fbseg writes passes through :func:`json_safe`. No torch, no numpy.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["json_safe"]


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-inf) replaced by None, recursively through
    dicts, lists and tuples (tuples become lists, as JSON has no tuples)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
