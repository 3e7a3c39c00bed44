"""The feedback-step benchmark, run tiny for what it checks besides time.

No timing is asserted (speed is measured in ``benchmarks/``, never in tests). What is asserted
are the benchmark's own equality claims, so that it cannot rot into printing numbers from a
stale API: the fast float32 NCHW step is bit-identical to the literal transcription of the
original loop (losses, weights, BatchNorm running statistics), the float32 forward is close to
float64 while bf16 autocast is not, and the MAC ceiling of pass elimination is what
``pass_elimination_ceiling`` computes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_feedback_step.py"


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "feedback_step.json"
    args = ["--small", "--steps", "1", "--height", "32", "--width", "64", "--threads", "1"]
    proc = subprocess.run(
        [sys.executable, str(BENCH), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "naive literal loop" in proc.stdout and "ours, float32 NCHW" in proc.stdout
    return json.loads(out.read_text())


def test_fast_nchw_step_is_bit_identical_to_the_literal_loop(result: dict) -> None:
    ours = result["variants"]["ours-nchw"]
    assert ours["first_step_rel_loss_diff_vs_naive"] == 0.0
    assert ours["max_rel_loss_diff_vs_naive"] == 0.0
    assert ours["max_abs_param_diff_vs_naive"] == 0.0
    assert ours["max_rel_bn_running_stat_diff_vs_naive"] == 0.0
    assert len(result["losses"]) == 2  # warm-up + 1 timed step, every method in each
    assert all(set(row) >= {"naive", "ours-nchw", "control-naive-1-thread"}
               for row in result["losses"])  # fmt: skip


def test_forward_accuracy_columns_order_the_forms(result: dict) -> None:
    fp32 = result["naive"]["forward_rel_error_vs_float64"]
    assert result["variants"]["ours-nchw"]["forward_rel_error_vs_float64"] == fp32
    bf16 = result["variants"]["ours-nhwc-bf16"]["forward_rel_error_vs_float64"]
    assert 0 < fp32["restored"] < 1e-4  # float32 rounding (24-bit significand), a few layers
    assert bf16["restored"] > 30 * fp32["restored"]  # 8-bit significand: autocast really ran
    assert bf16["logits_rms_error"] > 30 * fp32["logits_rms_error"]
    tf32 = result["forward_errors_vs_float64"]["tf32-emulated"]  # 10 mantissa bits, bf16 has 7
    assert fp32["restored"] < tf32["restored"] < bf16["restored"]


def test_feedback_signal_of_the_fast_step_is_the_literal_one(result: dict) -> None:
    """delta_t at t = 2, 3 of the first step: identical for ours-nchw, recorded for all."""
    signals = result["feedback_signal_first_step"]
    assert set(signals) >= {"naive", "ours-nchw", "ours-nhwc-bf16", "control-naive-1-thread"}
    assert [r["t"] for r in signals["ours-nchw"]] == [2, 3]
    for r in signals["ours-nchw"]:
        assert r["rms_diff_vs_naive"] == 0.0 and r["rms"] > 0
    assert [r["rms"] for r in signals["ours-nchw"]] == [r["rms"] for r in signals["naive"]]


def test_reported_ceiling_and_sizes(result: dict) -> None:
    sys.path.insert(0, str(BENCH.parent))
    try:
        from bench_feedback_step import pass_elimination_ceiling
    finally:
        sys.path.remove(str(BENCH.parent))
    macs = result["macs_per_image"]
    ceiling = pass_elimination_ceiling(
        macs["restorer_no_feedback"], macs["restorer_with_feedback"], macs["segmenter"], 3
    )
    assert result["pass_elimination_ceiling"] == pytest.approx(ceiling)
    assert 1.0 < ceiling < 1.2  # one of ten forward-equivalents per step, at most
    assert result["params"]["segmenter"] == 2_064_191  # ERFNet, 19 classes
    assert result["config"]["small"] is True
