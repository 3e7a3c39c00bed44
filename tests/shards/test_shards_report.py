"""The text report of an output folder (turbsim/shards/report.py, ``turbsim info``): per split the
shards, samples and sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from shards_samples import H, W

from turbsim import shards


# ---------------------------------------------------------------------------- summarize
def test_summarize(dataset: Path) -> None:
    text = shards.summarize(dataset)
    lines = text.splitlines()
    assert any(line.split()[:3] == ["train", "2", "5"] and f"{H}x{W}" in line for line in lines)
    assert any(line.split()[:3] == ["val", "1", "1"] for line in lines)
    assert any(line.split()[:3] == ["total", "3", "6"] for line in lines)
    assert f"compression  gzip (level {shards.GZIP_LEVEL})" in lines
    assert "flow stored  none" in lines
    assert "skipped inputs: 1" in lines
    sigma = np.concatenate(
        [r.params["sigma_r_px"] for s in ("train", "val") for r in shards.open_split(dataset, s)]
    )
    [row] = [line.split() for line in lines if line.startswith("sigma_r_px ")]
    assert row[1:] == [f"{sigma.min():.6g}", f"{sigma.max():.6g}"]
