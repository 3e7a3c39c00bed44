"""Fold fractions: hand-made fields with known folding, a naive reference of the Jacobian, the
Monte Carlo estimate (native against stored), and the ``turbsim params`` / ``plot-stats`` reports.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from turbsim import TurbulenceParams
from turbsim.pipeline.recipe import resolve_recipe
from turbsim.views.folding import (
    estimate_fold_fraction,
    fold_fraction,
    jacobian_determinant,
    shard_fold_fractions,
)
from turbsim_cli.turbsim_cmd import main


def _naive_determinant(field: np.ndarray) -> np.ndarray:
    """det J with explicit loops: central differences inside, one-sided at the edges."""
    _, h, w = field.shape

    def d(a: np.ndarray, r: int, c: int, axis: int) -> float:
        n = h if axis == 0 else w
        i = r if axis == 0 else c

        def at(k: int) -> float:
            return float(a[k, c] if axis == 0 else a[r, k])

        if i == 0:
            return at(1) - at(0)
        if i == n - 1:
            return at(n - 1) - at(n - 2)
        return (at(i + 1) - at(i - 1)) / 2

    out = np.empty((h, w))
    for r in range(h):
        for c in range(w):
            frr, frc = d(field[0], r, c, 0), d(field[0], r, c, 1)
            fcr, fcc = d(field[1], r, c, 0), d(field[1], r, c, 1)
            out[r, c] = (1 + frr) * (1 + fcc) - frc * fcr
    return out


def test_sinusoid_folds_where_its_slope_is_below_minus_one() -> None:
    """F_col = A sin(k c): the central difference is A sin(k) cos(k c), so with A sin(k) = 2.5
    the map folds where cos(k c) <= -0.4, i.e. at columns 4..8 of every 12 (5/12); the
    one-sided edge columns do not fold (worked out in the comments of the test)."""
    k = 2 * math.pi / 12
    amplitude = 2.5 / math.sin(k)
    c = np.arange(24)
    field = np.zeros((2, 5, 24))
    field[1] = amplitude * np.sin(k * c)[None, :]
    assert fold_fraction(field) == pytest.approx(5 / 12, abs=1e-12)
    det = jacobian_determinant(field)
    assert set(np.flatnonzero(det[2] <= 0) % 12) == {4, 5, 6, 7, 8}


def test_affine_fields_have_the_analytic_determinant() -> None:
    r, c = np.meshgrid(np.arange(9.0), np.arange(11.0), indexing="ij")
    a, b, cc, d = -0.3, 0.2, 0.5, -0.6  # F_row = a r + b c, F_col = cc r + d c
    field = np.stack([a * r + b * c, cc * r + d * c])
    want = (1 + a) * (1 + d) - b * cc
    np.testing.assert_allclose(jacobian_determinant(field), want, atol=1e-12)
    assert fold_fraction(field) == 0.0
    flip = np.stack([np.zeros_like(c), -2.0 * c])  # F_col = -2 c: det = 1 - 2 = -1 everywhere
    np.testing.assert_allclose(jacobian_determinant(flip), -1.0, atol=1e-12)
    assert fold_fraction(flip) == 1.0


def test_determinant_equals_the_naive_reference_and_batches_pool() -> None:
    field = np.random.default_rng(0).standard_normal((3, 2, 7, 9)) * 0.8
    want = np.stack([_naive_determinant(f) for f in field])
    np.testing.assert_allclose(jacobian_determinant(field), want, atol=1e-12)
    assert fold_fraction(field) == pytest.approx(float(np.mean(want <= 0)))
    with pytest.raises(ValueError, match="field must be"):
        jacobian_determinant(np.zeros((3, 4, 4)))


def test_monte_carlo_estimate_native_above_stored(reference_params: TurbulenceParams) -> None:
    """The BMVC air at a quarter of Cityscapes size: the native field folds at ~1/3 of the
    pixels; area-averaged to a quarter of that size the displacement folds far less."""
    est = estimate_fold_fraction(reference_params, (128, 256), (32, 64), fields=3, seed=1)
    assert 0.2 < est.native < 0.45 and est.native_stderr < 0.02
    assert est.stored is not None and est.stored < est.native - 0.1
    again = estimate_fold_fraction(reference_params, (128, 256), (32, 64), fields=3, seed=1)
    assert again == est  # deterministic from the seed
    weak = estimate_fold_fraction(reference_params.with_cn2(1e-14), (64, 128), fields=2)
    assert weak.native == 0.0 and weak.stored is None  # 0.56 px of tilt: no folding
    record = est.to_dict()
    assert record["native_size"] == [128, 256] and record["stored_size"] == [32, 64]
    assert set(record) >= {"fold_fraction", "fold_fraction_stored", "fold_fields"}


def test_recipe_source_draws_its_physics() -> None:
    recipe = resolve_recipe(None, {"cn2": "1e-14:1e-12", "normalize": "per-field"})
    est = estimate_fold_fraction(recipe, (64, 128), fields=3, seed=0)
    assert 0.0 <= est.native < 0.5


def test_params_command_reports_fold_fractions() -> None:
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["params", "--recipe", "bmvc2020", "--native-size", "128x256", "--size", "32x64",
         "--fold-fields", "2", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["native_size"] == [128, 256] and data["stored_size"] == [32, 64]
    assert data["fold_fraction_stored"] < data["fold_fraction"]
    assert data["sigma_r_px"] == pytest.approx(5.597, abs=1e-3)
    table = runner.invoke(main, ["params", "--native-size", "64x64", "--fold-fields", "2"])
    assert table.exit_code == 0 and "fold_fraction " in table.output
    assert "fold_fraction_stored" not in table.output  # no --size, no recipe size
    # an explicit flag overrides the recipe; a recipe's own size is the default --size
    weak = runner.invoke(
        main, ["params", "--recipe", "synthetic-benchmark", "--cn2", "1e-13", "--native-size",
               "256x512", "--fold-fields", "1", "--json"],
    )  # fmt: skip
    weak_data = json.loads(weak.output)
    assert weak_data["cn2"] == 1e-13 and weak_data["stored_size"] == [128, 256]
    bad = runner.invoke(main, ["params", "--native-size", "32x32", "--size", "64x64"])
    assert bad.exit_code == 2 and "--size" in bad.output and "larger" in bad.output
    unknown = runner.invoke(main, ["params", "--recipe", "no-such-recipe"])
    assert unknown.exit_code == 2 and "--recipe" in unknown.output
    assert "Traceback" not in unknown.output


def test_plot_stats_reports_the_fold_fraction_of_its_fields_and_of_shards(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from turbsim.pipeline.generate import generate
    from turbsim.pipeline.plan import make_plan
    from turbsim.sources.synthetic import write_sample_tree

    write_sample_tree(tmp_path / "cs", n=1, height=64, width=128, seed=0)
    recipe = resolve_recipe("bmvc2020", {"size": "32x64", "compression": "none"})
    shards = tmp_path / "shards"
    generate(make_plan(tmp_path / "cs", recipe), shards)
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["plot-stats", "--size", "32x32", "--fields", "4", "--cn2-values", "1e-13,1e-12",
         "--out", str(tmp_path / "s.png"), "--json", str(tmp_path / "s.json"),
         "--shards", str(shards)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "fold fraction of 32x32 fields" in result.output
    record = json.loads((tmp_path / "s.json").read_text())
    assert 0 <= record["fold"]["fold_fraction"] <= 1
    assert record["shards_fold"] == {
        split: e.to_dict() for split, e in shard_fold_fractions(shards).items()
    }
