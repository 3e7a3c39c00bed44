"""feedbackseg.runs.rundir: the metrics log of a run and its one tolerant reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from feedbackseg.evaluation.evaluate import load_result
from feedbackseg.evaluation.plots import PlotError
from feedbackseg.evaluation.plots import read_metrics as plots_read_metrics
from feedbackseg.runs.rundir import (
    METRICS_NAME,
    MetricsError,
    append_metrics,
    read_metrics,
    truncate_metrics,
)
from turbsim_cli.fbseg_cmd import main

_CLASSES = {"road": 0.5, "sidewalk": None}


def _killed_run(tmp_path: Path) -> Path:
    """A run folder whose metrics.jsonl ends in a line cut off by a kill."""
    run = tmp_path / "run"
    run.mkdir()
    append_metrics(run, {"kind": "train", "step": 1, "loss_seg": 2.5, "loss_l1": 0.1})
    val = {"kind": "val", "step": 2, "val_miou": 0.25, "per_class": _CLASSES, "split": "val"}
    append_metrics(run, val)
    with open(run / METRICS_NAME, "a") as handle:
        handle.write('{"kind": "train", "step": 3, "loss_s')  # no newline: the kill
    return run


def test_read_metrics_skips_the_half_written_last_line(tmp_path: Path) -> None:
    run = _killed_run(tmp_path)
    records = read_metrics(run)
    assert [r["step"] for r in records] == [1, 2]
    assert records[1]["per_class"] == _CLASSES
    assert read_metrics(run / METRICS_NAME) == records  # the file itself works too


def test_read_metrics_rejects_a_corrupt_line_that_is_not_the_last(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / METRICS_NAME).write_text('{"step": 1}\n\n{"step": 2,\n{"step": 3}\n')
    with pytest.raises(MetricsError, match=r"metrics\.jsonl: line 3 is not valid JSON$"):
        read_metrics(run)
    (run / METRICS_NAME).write_text('{"step": 1}\n[1, 2]\n')
    with pytest.raises(MetricsError, match="line 2 is not a JSON object"):
        read_metrics(run)
    with pytest.raises(MetricsError, match="no such metrics file"):
        read_metrics(tmp_path / "missing")


def test_plot_compare_and_eval_read_a_killed_run(tmp_path: Path) -> None:
    """The bug: plots.read_metrics raised "line 3 is not valid JSON" on a killed run."""
    run = _killed_run(tmp_path)
    assert [r["step"] for r in plots_read_metrics(run)] == [1, 2]
    result = load_result(run)
    assert result["miou"] == 0.25 and result["step"] == 2 and result["per_class"] == _CLASSES
    out = CliRunner().invoke(main, ["compare", str(run)])
    assert out.exit_code == 0, out.output
    assert "25.00" in out.output and "road" in out.output
    (run / METRICS_NAME).write_text('{"step": 1,\n{"step": 2}\n')
    with pytest.raises(PlotError, match="line 1 is not valid JSON"):
        plots_read_metrics(run)
    out = CliRunner().invoke(main, ["compare", str(run)])
    assert out.exit_code == 1 and "line 1 is not valid JSON" in out.output


def test_truncate_keeps_lines_byte_for_byte(tmp_path: Path) -> None:
    run = _killed_run(tmp_path)
    before = (run / METRICS_NAME).read_text().splitlines()
    truncate_metrics(run, 1)
    assert (run / METRICS_NAME).read_text() == before[0] + "\n"
    assert json.loads(before[0])["step"] == 1
    truncate_metrics(tmp_path / "nowhere", 5)  # no log: nothing to do
