"""plot-stats diagnostics and the Cn2 sweep sheet."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from turbsim import TurbulenceParams
from turbsim.physics.theory import sigma_r_px
from turbsim.views.diagnostics import (
    correlation_curves,
    rendered_taper,
    stats_record,
    variance_vs_cn2,
)
from turbsim_cli.turbsim_cmd import main

HAS_MPL = importlib.util.find_spec("matplotlib") is not None


def test_rendered_taper() -> None:
    taper = rendered_taper(64, np.array([0, 1, 10, 63]))
    assert taper[0] == 1.0 and np.all(np.diff(taper) < 0) and 0 < taper[-1] < 0.2


def test_curves_agree_with_theory_within_their_standard_errors(
    reference_params: TurbulenceParams,
) -> None:
    curves = correlation_curves(
        reference_params, (96, 96), 120, np.random.default_rng(4), np.array([2, 4, 8, 16, 32])
    )
    for key, measured in curves.measured.items():
        se = curves.stderr[key]
        assert np.all(se < 0.05)
        # Monte Carlo noise (4 s.e.) plus the filter's own deviation from the theory (3e-4)
        np.testing.assert_array_less(np.abs(measured - curves.theory[key]), 4 * se + 1e-3)
    assert np.all(curves.theory["x_par"] < curves.theory["x_perp"])


def test_variance_line_is_sigma_squared(reference_params: TurbulenceParams) -> None:
    line = variance_vs_cn2(
        reference_params, np.array([1e-13, 1e-12]), (64, 64), 40, np.random.default_rng(1)
    )
    np.testing.assert_allclose(line.theory_px2[1] / line.theory_px2[0], 10.0, rtol=1e-12)
    for i in range(2):
        assert np.all(np.abs(line.measured_px2[i] - line.theory_px2[i]) < 4 * line.stderr_px2[i])


def test_stats_record_and_largest_deviation(reference_params: TurbulenceParams) -> None:
    rng = np.random.default_rng(5)
    curves = correlation_curves(reference_params, (32, 32), 3, rng, np.array([1, 2, 4]))
    line = variance_vs_cn2(reference_params, np.array([1e-13, 1e-12]), (32, 32), 2, rng)
    assert curves.sigma_r_px == sigma_r_px(reference_params)
    assert line.theory_px2[1] == sigma_r_px(reference_params) ** 2
    record = stats_record(curves, line)
    assert list(record) == [
        "lags_px",
        "eta",
        "measured",
        "stderr",
        "theory",
        "cn2",
        "variance_theory_px2",
        "variance_measured_px2",
    ]
    assert record["lags_px"] == [1, 2, 4] and record["cn2"] == [1e-13, 1e-12]
    assert np.array(record["variance_measured_px2"]).shape == (2, 2)
    json.dumps(record)  # plain lists and floats
    gaps = [np.abs(curves.measured[k] - curves.theory[k]).max() for k in curves.measured]
    assert curves.largest_deviation() == max(gaps) > 0


@pytest.mark.skipif(not HAS_MPL, reason="matplotlib (viz extra) not installed")
def test_plot_stats_cli_writes_png_and_json(tmp_path: Path) -> None:
    out, js = tmp_path / "stats.png", tmp_path / "stats.json"
    res = CliRunner().invoke(
        main,
        [
            "plot-stats",
            "--size",
            "48x48",
            "--fields",
            "6",
            "--cn2-values",
            "1e-13,1e-12",
            "--out",
            str(out),
            "--json",
            str(js),
        ],
    )
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cv2.imread(str(out)).shape == (420, 1100, 3)
    data = json.loads(js.read_text())
    assert set(data["measured"]) == {"x_par", "x_perp", "y_par", "y_perp"}
    assert js.read_text() == json.dumps(data, indent=2) + "\n"  # the format of the JSON file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json", "stats.png"]
    worst = float(res.output.split("correlation curves: ")[1].split()[0])
    assert worst == pytest.approx(
        max(
            abs(m - t)
            for k in data["measured"]
            for m, t in zip(data["measured"][k], data["theory"][k], strict=True)
        ),
        abs=5e-4,
    )
    bad = CliRunner().invoke(main, ["plot-stats", "--cn2-values", "-1", "--out", str(out)])
    assert bad.exit_code == 2 and "--cn2-values" in bad.output


def test_plot_stats_without_matplotlib_says_how_to_install(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    res = CliRunner().invoke(main, ["plot-stats", "--out", str(tmp_path / "s.png")])
    assert res.exit_code != 0 and "pip install" in res.output and "[viz]" in res.output
    assert not (tmp_path / "s.png").exists()


def test_cn2_sweep_sheet(tmp_path: Path) -> None:
    from turbsim.pipeline.generate import generate
    from turbsim.pipeline.plan import make_plan
    from turbsim.pipeline.recipe import resolve_recipe
    from turbsim.sources.synthetic import write_sample_tree

    write_sample_tree(tmp_path / "cs", n=1, height=64, width=128, seed=0, splits=("val",))
    recipe = resolve_recipe(None, {"compression": "lzf", "splits": "val"})
    generate(make_plan(tmp_path / "cs", recipe), tmp_path / "out")
    res = CliRunner().invoke(
        main,
        [
            "preview",
            str(tmp_path / "out"),
            "--out",
            str(tmp_path / "pv"),
            "--count",
            "1",
            "--sweep-cn2",
            "1e-14,1e-12",
        ],
    )
    assert res.exit_code == 0, res.output
    sheet = cv2.imread(str(tmp_path / "pv" / "cn2_sweep.png"))
    assert sheet.shape[1] == 3 * 128 + 2 * 4
    # the strongest panel differs more from the clean one than the weakest
    from turbsim.views.preview import _TITLE_H

    panels = [sheet[_TITLE_H:, k * 132 : k * 132 + 128].astype(int) for k in range(3)]
    assert np.abs(panels[2] - panels[0]).mean() > np.abs(panels[1] - panels[0]).mean()
