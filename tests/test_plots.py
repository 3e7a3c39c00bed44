"""feedbackseg.evaluation.plots: what the pictures say (absent classes are not drawn as 0 %)."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from feedbackseg.evaluation.plots import PlotError, per_class_figure, plot_per_class_iou  # noqa: E402


def test_absent_classes_are_marked_not_drawn_as_zero(tmp_path) -> None:
    results = {
        "a": {"road": 0.5, "pole": 0.0, "rider": None},
        "b": {"road": 0.25, "pole": None, "rider": None},
    }
    figure = per_class_figure(results)
    axes = figure.axes[0]
    marks = [t for t in axes.texts if t.get_text() == "n/a"]
    assert len(marks) == 3  # a/rider, b/pole, b/rider; a's pole is a real 0 % bar
    heights = sorted(round(p.get_height(), 6) for p in axes.patches)
    assert heights == [0.0, 25.0, 50.0]
    legend = axes.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]
    assert legend.get_bbox_to_anchor().x0 > axes.get_window_extent().x1 - 1  # outside
    path = plot_per_class_iou(results, tmp_path / "iou.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nothing_to_draw_is_refused() -> None:
    with pytest.raises(PlotError):
        per_class_figure({})
    with pytest.raises(PlotError):
        per_class_figure({"a": {}})
