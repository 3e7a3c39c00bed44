"""Numeric precision of training (feedbackseg/devices/precision.py): float32 unless asked, the
TF32 flags set and restored, and the --amp / --tf32 / memory-format flags."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from train_helpers import FAST, _cli, _records

from feedbackseg.config import ConfigError, resolve_config
from feedbackseg.devices.precision import amp_settings, cuda_float32_precision

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_precision_is_float32_unless_asked(tmp_path: Path) -> None:
    """Float32 by default on every device (the feedback signal does not survive bf16 or TF32
    rounding); --amp gives bf16 autocast on the CPU, without a GradScaler."""
    cpu = torch.device("cpu")
    default = resolve_config("s", tmp_path / "r")
    assert default.amp is None and default.tf32 is False
    assert amp_settings(default, cpu) == (None, None)
    assert amp_settings(default, torch.device("cuda")) == (None, None)  # decided without CUDA
    off = resolve_config("s", tmp_path / "r", overrides={"amp": False})
    assert amp_settings(off, cpu) == (None, None)
    on = resolve_config("s", tmp_path / "r", overrides={"amp": True})
    assert amp_settings(on, cpu) == (torch.bfloat16, None)
    with pytest.raises(ConfigError, match="^tf32: must be true or false"):
        resolve_config("s", tmp_path / "r", overrides={"tf32": "yes"})


@pytest.mark.parametrize("tf32", [False, True])
def test_cuda_float32_precision_sets_and_restores_the_tf32_flags(tf32: bool) -> None:
    """The flags alone (no GPU needed): inside the block TF32 is as asked, after it as before."""
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = (conv.fp32_precision, matmul.fp32_precision)
    with cuda_float32_precision(tf32):
        expected = "tf32" if tf32 else "ieee"
        assert conv.fp32_precision == expected and matmul.fp32_precision == expected
    assert (conv.fp32_precision, matmul.fp32_precision) == before


@pytest.mark.parametrize(
    ("flags", "amp", "nhwc"),
    [
        ([], None, None),
        (["--amp", "--channels-last", "--tf32"], True, True),
        (["--no-amp", "--no-channels-last"], False, False),
    ],
)
def test_precision_and_memory_format_flags(
    shards: Path, tmp_path: Path, flags: list[str], amp: bool | None, nhwc: bool | None
) -> None:
    """--amp (bfloat16 autocast on the CPU), --tf32 and the memory-format flag reach the run's
    config and train; defaults: amp None (off), tf32 false, channels-last None (CUDA only)."""
    run = tmp_path / "run"
    result = _cli(str(shards), "--out", str(run), "--mode", "restore-seg", "--max-steps", "1",
                  "--log-every", "1", "--val-split", "none", *FAST, *flags)  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["amp"] is amp and config["channels_last"] is nhwc
    assert config["tf32"] is ("--tf32" in flags)
    (record,) = [r for r in _records(run) if r["kind"] == "train"]
    assert math.isfinite(record["loss_seg"]) and math.isfinite(record["loss_l1"])
