"""Fields between the native and the stored grid: OpenCV's area weights, the area-averaged flow
of ``turbsim generate --flow-resample area``, and the stored-scale filter whose fields have the
law of area-averaged native fields."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import scipy.fft as sfft
from reference_matlab import full_plane

from turbsim import TurbulenceParams, sample_tilt_field
from turbsim.physics.field import _box_average, spectral_filter, stored_scale_filter
from turbsim.physics.resample import area_resize_field, area_weights
from turbsim.pipeline.generate import generate
from turbsim.pipeline.plan import make_plan
from turbsim.pipeline.recipe import RecipeError, resolve_recipe
from turbsim.pipeline.render import resize_field, sample_field
from turbsim.shards import ShardReader
from turbsim.sources.synthetic import write_sample_tree


@pytest.mark.parametrize(("n_in", "n_out"), [(64, 16), (64, 24), (2048, 448), (7, 7), (9, 2)])
def test_area_weights_are_opencvs_inter_area(n_in: int, n_out: int) -> None:
    a = np.random.default_rng(0).standard_normal((5, n_in)).astype(np.float32)
    want = cv2.resize(a, (n_out, 5), interpolation=cv2.INTER_AREA)
    got = a.astype(np.float64) @ area_weights(n_in, n_out).T
    np.testing.assert_allclose(got, want, atol=2e-6)
    np.testing.assert_allclose(area_weights(n_in, n_out).sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="shrink"):
        area_weights(n_out, n_in + 1)


def test_area_resize_field_scales_to_stored_pixels() -> None:
    field = np.zeros((2, 64, 128), np.float32)
    field[0], field[1] = 4.0, -8.0  # a constant shift of (4, -8) native px
    out = area_resize_field(field, (16, 64))
    np.testing.assert_allclose(out[0], 1.0)  # 4 px / 4
    np.testing.assert_allclose(out[1], -4.0)  # -8 px / 2
    np.testing.assert_array_equal(area_resize_field(field, (64, 128)), field)  # same size
    with pytest.raises(ValueError, match="within"):
        area_resize_field(field, (128, 128))


def test_generate_stores_the_area_averaged_flow(tmp_path) -> None:
    write_sample_tree(tmp_path / "cs", n=1, height=64, width=128, seed=0, splits=("val",))
    common = {"splits": "val", "size": "16x32", "store_flow": "float16", "compression": "none"}
    recipes = {
        kind: resolve_recipe("bmvc2020", {**common, "flow_resample": kind})
        for kind in ("nearest", "area")
    }
    assert recipes["nearest"].digest() == resolve_recipe("bmvc2020", common).digest()
    for kind, recipe in recipes.items():
        out = tmp_path / kind
        generate(make_plan(tmp_path / "cs", recipe), out)
        (path,) = (out / "val").glob("shard-*.h5")
        with ShardReader(path) as reader:
            item = reader[0]
            assert reader.flow_resample == kind
            field, _ = sample_field(recipe, "val", item["name"], item["variant"], (64, 128))
            want = (
                area_resize_field(field, (16, 32))
                if kind == "area"
                else resize_field(field, (16, 32))
            )
            np.testing.assert_allclose(item["flow"], want, atol=1e-2)  # float16 storage
    with pytest.raises(RecipeError, match="flow_resample"):
        resolve_recipe(None, {"flow_resample": "bilinear"})


def _field_covariances(filt) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ensemble covariances (centred lags) of the unit fields a filter renders, from K K^T."""
    k_cc, k_rr = (full_plane(k.astype(np.float64)) for k in (filt.k_cc, filt.k_rr))
    k_cr_c, k_cr_r = (full_plane(k.astype(np.float64)) for k in filt.k_cr)
    c_cc = sfft.ifft2(k_cc**2 + k_cr_c**2).real
    c_rr = sfft.ifft2(k_rr**2 + k_cr_r**2).real
    c_cr = sfft.ifft2(k_cc * k_cr_r + k_cr_c * k_rr).real
    scale = c_cc[0, 0]  # normalise by the column variance: shapes are compared
    return tuple(sfft.fftshift(c) / scale for c in (c_cc, c_rr, c_cr))  # type: ignore[return-value]


@pytest.mark.parametrize(("native", "stored"), [((128, 256), (32, 64)), ((96, 192), (48, 48))])
def test_stored_scale_filter_has_the_area_averaged_covariance(
    reference_params: TurbulenceParams, native: tuple[int, int], stored: tuple[int, int]
) -> None:
    """Exact second moments: the stored-scale filter's correlations equal those of the native
    filter's fields averaged over stored footprints (to 2e-3); the gains (variances) are
    checked on samples below."""
    filt, (g_row, g_col) = stored_scale_filter(reference_params, native, stored)
    sy, sx = native[0] // stored[0], native[1] // stored[1]
    n_cc, n_rr, n_cr = _field_covariances(spectral_filter(reference_params, native))
    a_cc, a_rr, a_cr = (_box_average(c, sy, sx) for c in (n_cc, n_rr, n_cr))
    s_cc, s_rr, s_cr = _field_covariances(filt)
    h, w = stored

    def shapes(c_cc, c_rr, c_cr, dy, dx):  # correlations: each component by its own variance
        return (
            c_cc[h + dy, w + dx] / c_cc[h, w],
            c_rr[h + dy, w + dx] / c_rr[h, w],
            c_cr[h + dy, w + dx] / math.sqrt(c_cc[h, w] * c_rr[h, w]),
        )

    for dy, dx in ((0, 1), (1, 0), (0, 4), (3, 0), (2, 2), (2, -2)):
        got = shapes(s_cc, s_rr, s_cr, dy, dx)
        want = shapes(a_cc, a_rr, a_cr, dy, dx)
        np.testing.assert_allclose(got, want, atol=2e-3, err_msg=str((dy, dx)))
    assert 0 < g_row < 1 / sy and 0 < g_col < 1 / sx  # averaging only shrinks the variance
    with pytest.raises(ValueError, match="integer multiple"):
        stored_scale_filter(reference_params, (100, 200), (30, 60))


def test_stored_scale_fields_match_area_averaged_native_fields_by_monte_carlo(
    reference_params: TurbulenceParams,
) -> None:
    """The same check on samples: variance, a lag-2 moment and the fold fraction."""
    from turbsim.physics.field import draw_noise, render_unit_field
    from turbsim.physics.theory import sigma_r_px
    from turbsim.views.folding import fold_fraction

    native, stored, m = (128, 256), (32, 64), 48
    rng = np.random.default_rng(3)
    area = np.stack(
        [
            area_resize_field(sample_tilt_field(reference_params, native, rng), stored)
            for _ in range(m)
        ]
    ).astype(np.float64)
    filt, gain = stored_scale_filter(reference_params, native, stored)
    amp = sigma_r_px(reference_params) * np.array(gain)[:, None, None]
    direct = np.stack(
        [render_unit_field(filt, draw_noise(rng, stored)) * amp for _ in range(m)]
    ).astype(np.float64)
    for stat in (
        lambda f: (f**2).mean(axis=(2, 3)),
        lambda f: (f[..., :, 2:] * f[..., :, :-2]).mean(axis=(2, 3)),
        lambda f: np.array([[fold_fraction(x)] for x in f]),
    ):
        a, b = stat(area), stat(direct)
        err = np.hypot(a.std(axis=0, ddof=1), b.std(axis=0, ddof=1)) / math.sqrt(m)
        assert np.all(np.abs(a.mean(axis=0) - b.mean(axis=0)) < 4 * err + 1e-3)
