"""Aggregation of a finished study (feedbackseg/study/report.py): means, 95 % intervals and the
recovered fraction by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from study_helpers import CONTRACT_TOP

from feedbackseg.study.report import PAPER, aggregate, ci95
from feedbackseg.study.study_file import (
    Cell,
    Study,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


# --------------------------------------------------------------------------- aggregates
def _fake_eval(miou: float, clean: float | None = None, **extra) -> dict:
    per_class = {"road": miou, "sky": None}
    data = {"miou": miou, "per_class": per_class, "resolution": [32, 64], "steps": 5, **extra}
    if clean is not None:
        data["miou_clean"] = clean
    return data


def test_aggregates_and_95_interval_by_hand() -> None:
    study = Study(
        "hand",
        {
            "erfnet-clean": Cell("erfnet-clean", {"mode": "erfnet", "input": "clean"}),
            "erfnet": Cell("erfnet", {"mode": "erfnet"}),
            "feedback": Cell("feedback", {"mode": "feedback"}),
        },
        seeds=(0, 1, 2),
    )
    clean_on_clean = [0.50, 0.54, 0.52]
    erfnet = [0.40, 0.41, 0.45]
    feedback = [0.45, 0.47, 0.46]
    evaluations = {
        "erfnet-clean": {s: _fake_eval(0.3, c) for s, c in enumerate(clean_on_clean)},
        "erfnet": {s: _fake_eval(m) for s, m in enumerate(erfnet)},
        "feedback": {
            s: _fake_eval(
                m,
                psnr_restored=30.0 + s,
                psnr_distorted=25.0,
                flow_epe_px=0.5,
                flow_epe_zero_px=2.0,
                miou_per_iteration=[m - 0.02 * s, m - 0.01, m],
            )
            for s, m in enumerate(feedback)  # fmt: skip
        },
    }
    results = aggregate(study, evaluations)
    t = 4.302652729749464  # scipy.stats.t.ppf(0.975, 2)
    cell = results["cells"]["feedback"]
    assert cell["miou"] == pytest.approx([45.0, 47.0, 46.0])
    assert cell["miou_mean"] == pytest.approx(46.0)
    assert cell["miou_ci95"] == pytest.approx(t * 1.0 / math.sqrt(3))  # sample std = 1
    harm = [10.0, 13.0, 7.0]  # clean-on-clean minus erfnet, per seed
    assert results["harm"]["mean"] == pytest.approx(np.mean(harm)) == 10.0
    assert results["harm"]["ci95"] == pytest.approx(t * 3.0 / math.sqrt(3))  # s = 3
    recovered = [5 / 10, 6 / 13, 1 / 7]
    assert cell["recovered"] == pytest.approx(np.mean(recovered))
    assert cell["recovered_ci95"] == pytest.approx(t * np.std(recovered, ddof=1) / math.sqrt(3))
    assert results["cells"]["erfnet"]["recovered"] == 0.0
    assert cell["psnr_restored"] == pytest.approx(31.0) and cell["flow_epe_px"] == 0.5
    assert cell["per_class_mean"] == {"road": pytest.approx(46.0), "sky": None}
    assert cell["flow_epe_zero_px"] == 2.0
    assert cell["miou_feedback_zeroed"] == pytest.approx([45.0, 45.0, 42.0])
    assert cell["miou_per_iteration_mean"] == pytest.approx([44.0, 45.0, 46.0])
    assert "miou_feedback_zeroed" not in results["cells"]["erfnet"]
    assert results["cells"]["erfnet-clean"]["miou_clean"] == pytest.approx([50.0, 54.0, 52.0])
    assert "miou_clean" not in cell and "psnr_restored" not in results["cells"]["erfnet"]
    assert set(results) == CONTRACT_TOP and results["resolution"] == "32x64"
    assert results["steps"] == 5 and results["paper"]["feedback_over_erfnet"] == 17.41
    assert ci95([1.0]) is None
    one_seed = aggregate(
        Study("one", {"erfnet": study.cells["erfnet"]}, seeds=(0,)),
        {"erfnet": {0: _fake_eval(0.4)}},
    )
    assert one_seed["cells"]["erfnet"]["miou_ci95"] is None
    assert one_seed["harm"] == {"mean": None, "ci95": None}  # no clean-trained ERFNet cell
    assert PAPER["restore_seg_over_erfnet"] == 12.71 and PAPER["cb_ifl_share"] == 1.9
