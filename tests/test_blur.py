"""The blur of the same atmosphere (SPEC-turbsim section 8): acceptance tests 1-4.

1. r0, theta0 and the Z-tilt cross-check against the reference values and the tilt theory.
2. The measured MTF of :func:`turbsim.physics.blur.blur_image` equals M_D M_SE; mean and constants
kept. 3. Long-exposure consistency: M_SE x (tilt's Gaussian) ~ Fried's long-exposure MTF.
4. Blur off changes nothing; blur on is deterministic (same seed, same bytes).
"""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest

from turbsim.physics import blur, theory
from turbsim.physics.field import distort, sample_tilt_field
from turbsim.physics.params import REFERENCE_PARAMS, TurbulenceParams
from turbsim.physics.quantities import describe
from turbsim.physics.warp import warp_image

REF = REFERENCE_PARAMS


# ------------------------------------------------------------------------- 1. r0, theta0, tilt
@pytest.mark.parametrize(("cn2", "r0_mm"), [(1e-12, 1.70), (3e-13, 3.50), (1e-13, 6.76)])
def test_fried_parameter_reference_values(cn2: float, r0_mm: float) -> None:
    assert theory.r0_m(REF.with_cn2(cn2)) * 1e3 == pytest.approx(r0_mm, abs=0.006)


def test_fried_parameter_closed_form() -> None:
    """(0.423 k^2 Cn2 L a)^(-3/5), a = 3/8 spherical, 1 plane, written out independently."""
    k = 2 * math.pi / 550e-9
    spherical = (0.423 * k**2 * 1e-12 * 2000.0 * 0.375) ** -0.6
    plane = (0.423 * k**2 * 1e-12 * 2000.0) ** -0.6
    assert theory.r0_m(REF) == pytest.approx(spherical, rel=1e-12)
    plane_params = TurbulenceParams(**{**REF.to_dict(), "wave": "plane"})
    assert theory.r0_m(plane_params) == pytest.approx(plane, rel=1e-12)
    assert REF.aperture_m / theory.r0_m(REF) == pytest.approx(31.6, abs=0.05)


def test_isoplanatic_angle_reference_values() -> None:
    f = REF.focal_length_px
    assert f * theory.theta0_rad(REF) == pytest.approx(0.062, abs=5e-4)
    plane = TurbulenceParams(**{**REF.to_dict(), "wave": "plane"})
    assert f * theory.theta0_rad(plane) == pytest.approx(0.020, abs=5e-4)
    beta = math.gamma(8 / 3) ** 2 / math.gamma(16 / 3)
    assert beta == pytest.approx(0.05641, abs=1e-5)


def test_z_tilt_agrees_with_the_technion_tilt() -> None:
    """0.1698 (lambda/D)^2 (D/r0)^(5/3) gives 5.63 px against sigma_r = 5.597 px (0.6 %)."""
    z_tilt = REF.focal_length_px * theory.z_tilt_sigma_rad(REF)
    assert z_tilt == pytest.approx(5.63, abs=0.01)
    assert z_tilt / theory.sigma_r_px(REF) == pytest.approx(1.0, abs=0.01)
    # geometric-optics limit (q -> infinity): 0.1698 x 0.423 x 3/8 x 4 pi^2 = 1.0633 vs c = 1.0643
    assert 0.1698 * 0.423 * 0.375 * 4 * math.pi**2 == pytest.approx(1.0633, abs=1e-4)
    assert theory.variance_coefficient(1e4, "spherical") == pytest.approx(1.0643, abs=1e-3)


def test_describe_reports_theta0_and_blur_width() -> None:
    d = describe(REF)
    assert d["theta0_px"] == pytest.approx(REF.focal_length_px * theory.theta0_rad(REF))
    assert d["blur_fwhm_px"] == pytest.approx(blur.blur_fwhm_px(REF))
    # lambda / r0 = 24.3 px at the reference; the FWHM of the tilt-removed PSF is smaller
    lam_over_r0 = REF.wavelength_m * REF.focal_length_px / theory.r0_m(REF)
    assert lam_over_r0 == pytest.approx(24.3, abs=0.05)
    assert 0.5 * lam_over_r0 < d["blur_fwhm_px"] < lam_over_r0


def test_fwhm_is_the_half_maximum_of_the_psf() -> None:
    for cn2 in (1e-13, 1e-12):
        p = REF.with_cn2(cn2)
        half = blur.blur_fwhm_px(p) / 2
        assert blur.psf_profile(p, np.array([half]))[0] == pytest.approx(0.5, abs=1e-6)
    # far from turbulence the PSF is the Airy disc: FWHM = 1.029 lambda f / D
    calm = REF.with_cn2(1e-20)
    airy = 1.029 * calm.wavelength_m * calm.focal_length_px / calm.aperture_m
    assert blur.blur_fwhm_px(calm) == pytest.approx(airy, rel=2e-3)


# ------------------------------------------------------------------------- 2. measured MTF
@pytest.mark.parametrize("cn2", [1e-13, 1e-12])
def test_measured_mtf_equals_the_model(cn2: float) -> None:
    """The spectrum of the blurred impulse is M_D M_SE within 1 % at 8+ frequencies."""
    p = REF.with_cn2(cn2)
    n = 512
    impulse = np.zeros((n, n))
    impulse[n // 2, n // 2] = 1.0
    out = blur.blur_image(impulse, p)
    spectrum = np.abs(np.fft.fft2(out))
    k = np.arange(0, n // 2, 2)
    for measured, nu in ((spectrum[0, k], k / n), (spectrum[k, k], np.hypot(k, k) / n)):
        model = blur.blur_mtf(p, nu)
        used = model > 0.02
        assert used.sum() >= 8
        np.testing.assert_allclose(measured[used], model[used], rtol=0.01)
    assert out.sum() == pytest.approx(1.0, abs=2e-3)  # the blur keeps the mean


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 2), (37, 50), (40, 31, 3), (16, 16, 1), (20, 24, 4)])
def test_constant_stays_constant_shape_and_dtype_kept(dtype: type, shape: tuple) -> None:
    image = np.full(shape, 77, dtype)
    out = blur.blur_image(image, REF)
    assert out.shape == image.shape and out.dtype == image.dtype
    np.testing.assert_allclose(out.astype(np.float64), 77.0, atol=1e-3)


def test_channels_are_blurred_independently_and_deterministically(rng) -> None:
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = blur.blur_image(image, REF.with_cn2(3e-13))
    np.testing.assert_array_equal(out, blur.blur_image(image, REF.with_cn2(3e-13)))
    for c in range(3):
        np.testing.assert_array_equal(
            out[..., c], blur.blur_image(image[..., c], REF.with_cn2(3e-13))
        )


def test_chromatic_blur_uses_each_channels_wavelength(rng) -> None:
    image = rng.random((40, 48, 3))
    waves = (600e-9, 550e-9, 450e-9)
    out = blur.blur_image(image, REF, channel_wavelengths_m=waves)
    for c, wave in enumerate(waves):
        alone = blur.blur_image(
            image[..., c], TurbulenceParams(**{**REF.to_dict(), "wavelength_m": wave})
        )
        np.testing.assert_allclose(out[..., c], alone, atol=1e-4)  # padding differs only
    # r0 grows as lambda^(6/5)
    red = TurbulenceParams(**{**REF.to_dict(), "wavelength_m": 600e-9})
    assert theory.r0_m(red) / theory.r0_m(REF) == pytest.approx((600 / 550) ** 1.2, rel=1e-12)
    with pytest.raises(ValueError, match="3 channel"):
        blur.blur_image(image, REF, channel_wavelengths_m=(550e-9,))


def test_bad_images_are_refused() -> None:
    with pytest.raises(ValueError, match="H, W >= 2"):
        blur.blur_image(np.zeros((1, 5)), REF)
    with pytest.raises(TypeError, match="uint8 or float"):
        blur.blur_image(np.zeros((4, 4), np.int32), REF)


# ------------------------------------------------------------- 3. long-exposure consistency
def _exponent_ratio(p: TurbulenceParams) -> float:
    """max over 0 < x <= D of |(SE + tilt exponent) / LE exponent - 1| (near field, alpha = 1).

    The exponents are compared (the MTFs themselves underflow to 0 near x = D); the model's
    short-exposure MTF is checked against its exponent where it does not underflow.
    """
    r0 = theory.r0_m(p)
    x = np.linspace(1e-3, 1.0, 400) * p.aperture_m
    nu = x / (p.wavelength_m * p.focal_length_px)
    se = -3.44 * (x / r0) ** (5 / 3) * (1 - np.cbrt(x / p.aperture_m))
    np.testing.assert_allclose(
        blur.short_exposure_mtf(x, r0, p.aperture_m, 1.0), np.exp(se), rtol=1e-9, atol=1e-300
    )
    tilt = -2 * math.pi**2 * theory.sigma_r_px(p) ** 2 * nu**2  # the Technion tilt's Gaussian
    long_exposure = -3.44 * (x / r0) ** (5 / 3)
    small = long_exposure > -700  # where exp() is representable, the model's LE MTF agrees
    np.testing.assert_allclose(blur.long_exposure_mtf(x[small], r0), np.exp(long_exposure[small]))
    return float(np.max(np.abs((se + tilt) / long_exposure - 1)))


def test_short_exposure_times_tilt_is_long_exposure_at_the_reference() -> None:
    assert REF.q == pytest.approx(1.62, abs=0.01)
    assert _exponent_ratio(REF) < 0.05


@pytest.mark.parametrize("aperture_m", [0.034, 0.0535714, 0.1, 0.3])
def test_long_exposure_consistency_for_near_field_apertures(aperture_m: float) -> None:
    p = TurbulenceParams(**{**REF.to_dict(), "aperture_m": aperture_m})
    assert p.q >= 1.0 and blur.near_field_alpha(p) == 1.0
    assert _exponent_ratio(p) < 0.08


def test_far_field_uses_alpha_one_half() -> None:
    p = TurbulenceParams(**{**REF.to_dict(), "aperture_m": 0.02})
    assert p.q < 1.0 and blur.near_field_alpha(p) == 0.5


# ----------------------------------------------------------------- 4. off = before, on = same
def test_distort_without_blur_is_the_tilt_warp(rng) -> None:
    image = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    seed = 5
    plain = distort(image, REF, np.random.default_rng(seed))
    field = sample_tilt_field(REF, image.shape[:2], np.random.default_rng(seed))
    np.testing.assert_array_equal(plain, warp_image(image, field))
    np.testing.assert_array_equal(
        plain, distort(image, REF, np.random.default_rng(seed), blur="none")
    )
    blurred = distort(image, REF, np.random.default_rng(seed), blur="short-exposure")
    np.testing.assert_array_equal(blurred, blur.blur_image(plain, REF))
    with pytest.raises(ValueError, match="blur must be one of"):
        distort(image, REF, np.random.default_rng(seed), blur="gaussian")


def _generate(cli_run, cs, out, *extra: str) -> None:
    result = cli_run(
        "generate",
        "--cityscapes",
        str(cs),
        "--out",
        str(out),
        "--recipe",
        "strong",
        "--size",
        "32x64",
        "--store-flow",
        "--quiet",
        *extra,
    )
    assert result.exit_code == 0, result.output


def test_generate_with_blur_is_reproducible_and_records_r0(tmp_path) -> None:
    from click.testing import CliRunner

    from turbsim_cli.turbsim_cmd import main

    def cli_run(*args: str):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    cs = tmp_path / "cs"
    made = cli_run(
        "sample-cityscapes",
        str(cs),
        "--n",
        "2",
        "--height",
        "64",
        "--width",
        "128",
        "--splits",
        "val",
    )
    assert made.exit_code == 0, made.output
    _generate(cli_run, cs, tmp_path / "plain", "--splits", "val")
    _generate(cli_run, cs, tmp_path / "a", "--splits", "val", "--blur", "short-exposure")
    _generate(
        cli_run,
        cs,
        tmp_path / "b",
        "--splits",
        "val",
        "--blur",
        "short-exposure",
        "--shard-size",
        "1",
    )
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["recipe"]["blur"] == "short-exposure"
    plain_recipe = json.loads((tmp_path / "plain" / "manifest.json").read_text())["recipe"]
    assert plain_recipe["blur"] == "none"

    def arrays(folder):
        out = {}
        for path in sorted(folder.glob("val/*.h5")):
            with h5py.File(path) as f:
                for i, name in enumerate(f["name"].asstr()[()]):
                    out[name] = {k: f[k][i] for k in ("distorted", "clean", "flow")}
                    out[name]["r0_m"] = f["params/r0_m"][i] if "r0_m" in f["params"] else None
        return out

    a, b, plain = arrays(tmp_path / "a"), arrays(tmp_path / "b"), arrays(tmp_path / "plain")
    assert a.keys() == b.keys() == plain.keys() and len(a) == 2
    for name in a:
        for key in ("distorted", "clean", "flow"):
            np.testing.assert_array_equal(a[name][key], b[name][key])
        np.testing.assert_array_equal(a[name]["clean"], plain[name]["clean"])
        np.testing.assert_array_equal(a[name]["flow"], plain[name]["flow"])  # same tilt
        assert plain[name]["r0_m"] is None
        assert a[name]["r0_m"] == pytest.approx(theory.r0_m(REF))
        # the blur removes detail: much less gradient energy than the tilt-only frame
        grad = [
            np.abs(np.diff(x[name]["distorted"].astype(float), axis=1)).mean() for x in (a, plain)
        ]
        assert grad[0] < 0.7 * grad[1]


def test_plot_stats_consistency_table_matches_the_check() -> None:
    from turbsim.views.diagnostics import blur_consistency

    check = blur_consistency(REF)
    assert check.max_exponent_error == pytest.approx(_exponent_ratio(REF), abs=2e-3)
    assert check.max_exponent_error < 0.05
    assert check.z_tilt_px / check.sigma_r_px == pytest.approx(1.0065, abs=1e-3)
    table = check.table()
    assert "Z-tilt from r0 5.633 px vs Technion sigma_r 5.597 px" in table
    assert "over x <= D: 3.8 %" in table


def test_blur_padding_is_bounded_for_absurd_apertures() -> None:
    """Review finding: the padding grew with the PSF without bound (D = 1e-5 m: 89,623 px)."""
    from dataclasses import replace

    tiny = replace(REFERENCE_PARAMS, aperture_m=1e-5)
    assert blur.padding_px(tiny) > 10_000
    image = np.full((24, 40, 3), 90, np.uint8)
    np.testing.assert_array_equal(blur.blur_image(image, tiny), image)
