"""Theory: AoA variance constants and tilt correlation tables (SPEC-turbsim 2, 3; tests 1, 2, 7)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from reference_matlab import aa_correlation_literal, aa_variance_coefficient_literal

import turbsim
from turbsim import TurbulenceParams, correlation_table, tilt_correlation
from turbsim.physics import table_cache, theory
from turbsim.physics.params import shape_value
from turbsim.physics.quantities import QUANTITIES, describe, description_table
from turbsim.physics.theory import (
    C0,
    compute_correlation_table,
    sigma_a_rad,
    sigma_r_px,
    variance_coefficient,
)

D_REF = 0.3 / 5.6
REF_ETA = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500]
REF_B_PAR = [0.9858, 0.9455, 0.8236, 0.533, 0.348, 0.210, 0.079, 0.0205, -0.0046, -0.0036]
REF_B_PERP = [0.9952, 0.9812, 0.9346, 0.769, 0.596, 0.433, 0.250, 0.147, 0.0750, 0.0269]


def _q(path_length_m: float) -> float:
    return D_REF / math.sqrt(550e-9 * path_length_m)


# ------------------------------------------------------------------------------ variance
def test_c0_constant() -> None:
    # SPEC quotes 1.41895; the formula gives 1.419014 (agreement to 4 significant digits)
    assert C0 == pytest.approx(1.41895, rel=1e-4)


@pytest.mark.parametrize(
    ("length_km", "c_sph", "c_plane"),
    [(2, 1.0497, 2.8084), (5, 1.0271, 2.7335), (10, 1.0003, 2.6406)],
)
def test_variance_coefficient_reference_values(
    length_km: float, c_sph: float, c_plane: float
) -> None:
    q = _q(length_km * 1000)
    assert variance_coefficient(q, "spherical") == pytest.approx(c_sph, abs=5e-5)
    assert variance_coefficient(q, "plane") == pytest.approx(c_plane, abs=5e-5)


@pytest.mark.parametrize("q", [0.05, 0.3, 1.615, 4.0, 30.0, 300.0])
@pytest.mark.parametrize("wave", ["spherical", "plane"])
def test_variance_coefficient_equals_original_formula(q: float, wave: str) -> None:
    assert variance_coefficient(q, wave) == pytest.approx(
        aa_variance_coefficient_literal(q, wave), rel=1e-10
    )


def test_variance_coefficient_geometric_optics_limits() -> None:
    assert variance_coefficient(1e5, "spherical") == pytest.approx(1.0643, abs=5e-5)
    assert variance_coefficient(1e5, "plane") == pytest.approx(2.8380, abs=5e-5)
    # The Matlab fallbacks 1.09 / 2.91 are the rounded geometric-optics constants.
    assert variance_coefficient(1e5, "spherical") == pytest.approx(1.09, rel=0.03)
    assert variance_coefficient(1e5, "plane") == pytest.approx(2.91, rel=0.03)


@pytest.mark.parametrize(
    ("length_m", "cn2", "sigma_px"),
    [
        (2000, 1e-12, "5.597"),
        (2000, 3e-13, "3.066"),
        (5000, 7e-13, "7.324"),
        (10000, 5e-13, "8.64"),
        (2000, 1e-13, "1.770"),
    ],
)
def test_sigma_r_reference_values(length_m: float, cn2: float, sigma_px: str) -> None:
    """To the precision the reference quotes (half a unit of its last digit)."""
    p = TurbulenceParams(cn2=cn2, path_length_m=length_m, aperture_m=D_REF)
    decimals = len(sigma_px.split(".")[1])
    assert sigma_r_px(p) == pytest.approx(float(sigma_px), abs=0.5 * 10.0**-decimals)
    assert turbsim.aoa_variance(p) == pytest.approx((sigma_r_px(p) / p.focal_length_px) ** 2)
    assert sigma_a_rad(p) == pytest.approx(sigma_r_px(p) / p.focal_length_px, rel=1e-15)


def test_variance_is_linear_in_cn2_and_path() -> None:
    p = TurbulenceParams(cn2=1e-13, path_length_m=3000, aperture_m=0.05)
    assert turbsim.aoa_variance(p.with_cn2(7e-13)) == pytest.approx(7 * turbsim.aoa_variance(p))


def test_variance_coefficient_bad_input() -> None:
    with pytest.raises(ValueError, match="q"):
        variance_coefficient(-1.0)
    with pytest.raises(ValueError, match="wave"):
        variance_coefficient(1.0, "cylinder")


# ---------------------------------------------------------------------- correlation table
@pytest.fixture(scope="module")
def reference_table(reference_params: TurbulenceParams):
    return correlation_table(reference_params.rho, "spherical", "matlab")


def test_table_matches_reference_values(reference_table) -> None:
    b_par, b_perp = reference_table(np.array(REF_ETA))
    np.testing.assert_allclose(b_par, REF_B_PAR, atol=2e-3)
    np.testing.assert_allclose(b_perp, REF_B_PERP, atol=2e-3)


def test_table_equals_literal_matlab_quadrature(reference_table) -> None:
    idx = np.array([0, 120, 300, 450, 600, 700])  # eta <= 1000, where nothing is zeroed
    lit_par, lit_perp = aa_correlation_literal(reference_table.rho, reference_table.eta[idx])
    np.testing.assert_allclose(reference_table.b_par[idx], lit_par, atol=1e-6)
    np.testing.assert_allclose(reference_table.b_perp[idx], lit_perp, atol=1e-6)


def test_table_shape_properties(reference_table) -> None:
    t = reference_table
    assert t.eta[0] == pytest.approx(0.01) and t.eta[-1] == pytest.approx(1000 * t.rho)
    assert t.b_par[0] == 1.0 and t.b_perp[0] == 1.0
    assert np.all(t.b_perp > 0)
    sel = (t.eta >= 0.05) & (t.eta <= 1000)
    assert np.all(t.b_par[sel] < t.b_perp[sel])
    # the original zeroes b_par from the last eta <= 1000 on
    assert np.all(t.b_par[t.eta > 1000] == 0.0)


def test_curl_free_identity(reference_table) -> None:
    """b_par = d[eta b_perp] / d eta: the tilt field is a gradient."""
    t = reference_table
    deriv = np.gradient(t.eta * t.b_perp, t.eta)
    sel = (t.eta >= 0.05) & (t.eta <= 500)
    np.testing.assert_allclose(deriv[sel], t.b_par[sel], atol=1e-3)


@pytest.mark.parametrize(
    ("rho", "half_par", "half_perp"), [(4.0, 3.51, 8.43), (10.0, 4.42, 11.27), (30.0, 5.56, 14.90)]
)
def test_half_correlation_distances(rho: float, half_par: float, half_perp: float) -> None:
    t = correlation_table(rho, "spherical", "fast")
    got_par, got_perp = t.half_correlation_eta()
    # reference values are given to 3 significant digits
    assert got_par == pytest.approx(half_par, abs=0.011)
    assert got_perp == pytest.approx(half_perp, abs=0.03)


def test_fast_quadrature_is_close_to_matlab(reference_table) -> None:
    fast = correlation_table(reference_table.rho, "spherical", "fast")
    sel = reference_table.eta <= 500
    assert np.max(np.abs(fast.b_par - reference_table.b_par)[sel]) < 2e-3
    assert np.max(np.abs(fast.b_perp - reference_table.b_perp)[sel]) < 2e-3


def test_plane_wave_table() -> None:
    t = compute_correlation_table(10.0, "plane", "fast")
    assert t.b_par[0] == 1.0 and t.b_perp[0] == 1.0
    # plane waves decorrelate faster than spherical ones (no path weighting towards the camera)
    sph = correlation_table(10.0, "spherical", "fast")
    assert t.half_correlation_eta()[1] < sph.half_correlation_eta()[1]
    deriv = np.gradient(t.eta * t.b_perp, t.eta)
    sel = (t.eta >= 0.05) & (t.eta <= 20)
    np.testing.assert_allclose(deriv[sel], t.b_par[sel], atol=2e-3)


def test_interpolation_clamps_like_the_original(reference_table) -> None:
    t = reference_table
    b_par, b_perp = t(np.array([0.0, 0.001, t.eta[-1] * 10]))
    assert b_par[0] == 1.0 and b_perp[1] == 1.0
    assert b_par[2] == t.b_par[-1] and b_perp[2] == t.b_perp[-1]


def test_shape_depends_only_on_rho_and_eta(reference_params: TurbulenceParams) -> None:
    """Two cameras with the same rho: the same correlation at the same eta (test 7)."""
    other = TurbulenceParams(
        cn2=3e-14,
        path_length_m=7000,
        aperture_m=reference_params.aperture_m,
        wavelength_m=1e-6,
        focal_length_px=12000,
        height_m=reference_params.height_m,
    )
    assert other.rho == reference_params.rho
    eta = np.array([0.7, 3.0, 40.0])
    a = tilt_correlation(reference_params, eta * reference_params.f_theta_d_px)
    b = tilt_correlation(other, eta * other.f_theta_d_px)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_equal_rho_reached_along_other_float_paths_shares_one_table(
    reference_params: TurbulenceParams,
) -> None:
    """rho = 0.4 h / D from two (h, D) pairs of one ratio differs in the last bits; the table
    (and filter) key rounds to 12 significant digits, so both get the same cached table."""
    rho = reference_params.rho
    nudged = rho * (1 + 4e-16)
    assert nudged != rho
    assert correlation_table(nudged, "spherical", "fast") is correlation_table(
        rho, "spherical", "fast"
    )
    for scale in (3.03, 5.05, 1.1):  # D, h and L scaled together: the same rho and f theta_D
        # (3.03 changes the float f theta_D, 5.05 the float rho, in their last bits)
        other = TurbulenceParams(
            cn2=1e-12,
            path_length_m=reference_params.path_length_m * scale,
            aperture_m=reference_params.aperture_m * scale,
            height_m=reference_params.height_m * scale,
        )
        assert other.shape_key() == reference_params.shape_key(), scale


def test_disk_cache_round_trip_and_repair(tmp_path, monkeypatch) -> None:
    from turbsim.physics import theory

    monkeypatch.setenv("TURBSIM_CACHE_DIR", str(tmp_path))
    rho = 7.25
    fresh = theory._correlation_table_cached.__wrapped__(rho, "spherical", "fast")
    files = list(tmp_path.glob("correlation_spherical_fast_*.npz"))
    assert len(files) == 1
    again = theory._correlation_table_cached.__wrapped__(rho, "spherical", "fast")
    np.testing.assert_array_equal(again.b_perp, fresh.b_perp)
    # A damaged file is recomputed and rewritten, never trusted.
    files[0].write_bytes(b"not an npz")
    repaired = theory._correlation_table_cached.__wrapped__(rho, "spherical", "fast")
    np.testing.assert_array_equal(repaired.b_par, fresh.b_par)
    with np.load(files[0]) as z:
        np.testing.assert_array_equal(z["b_par"], fresh.b_par)
    assert not list(tmp_path.glob("*.tmp"))


def test_correlation_table_bad_input() -> None:
    with pytest.raises(ValueError, match="rho"):
        compute_correlation_table(0.0)
    with pytest.raises(ValueError, match="quadrature"):
        compute_correlation_table(3.0, "spherical", "simpson")


def test_cache_file_names_are_unchanged(reference_params: TurbulenceParams) -> None:
    """Caches written before table_cache.py existed stay valid: same folder, same names."""
    rho = shape_value(reference_params.rho)
    path = table_cache.table_path(rho, "spherical", "matlab")
    assert path.parent == table_cache.cache_dir()
    assert path.name == "correlation_spherical_matlab_rho29.8667_2b58867100f76fc4.npz"


def test_cache_reads_a_file_in_the_old_format(tmp_path, monkeypatch) -> None:
    """A file as the former theory.py wrote it (np.savez with these keys) is read back."""
    monkeypatch.setenv("TURBSIM_CACHE_DIR", str(tmp_path))
    path = table_cache.table_path(3.5, "plane", "fast")
    eta, b_par, b_perp = np.geomspace(0.01, 3500, 7), np.linspace(1, 0, 7), np.linspace(1, 0.5, 7)
    with open(path, "wb") as fh:
        np.savez(fh, version=1, rho=3.5, wave="plane", quadrature="fast", eta=eta, b_par=b_par,
                 b_perp=b_perp)  # fmt: skip
    loaded = table_cache.load(path, 3.5, "plane", "fast")
    assert loaded is not None
    for got, want in zip(loaded, (eta, b_par, b_perp), strict=True):
        np.testing.assert_array_equal(got, want)
    # Another rho, wave, quadrature or version is not this table.
    assert table_cache.load(path, 3.25, "plane", "fast") is None
    assert table_cache.load(path, 3.5, "spherical", "fast") is None
    assert table_cache.load(path, 3.5, "plane", "matlab") is None
    assert table_cache.load(tmp_path / "missing.npz", 3.5, "plane", "fast") is None


def test_cache_store_round_trip_and_unwritable_folder_warns(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TURBSIM_CACHE_DIR", str(tmp_path / "sub"))
    table = compute_correlation_table(2.0, "plane", "fast")
    path = table_cache.table_path(2.0, "plane", "fast")
    arrays = (table.eta, table.b_par, table.b_perp)
    table_cache.store(path, 2.0, "plane", "fast", *arrays)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left
    with np.load(path) as z:
        assert sorted(z.files) == sorted(
            ["version", "rho", "wave", "quadrature", "eta", "b_par", "b_perp"]
        )
    for got, want in zip(table_cache.load(path, 2.0, "plane", "fast"), arrays, strict=True):
        np.testing.assert_array_equal(got, want)
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    with pytest.warns(UserWarning, match="could not cache"):
        table_cache.store(blocked / "t.npz", 2.0, "plane", "fast", *arrays)


def test_only_table_cache_reads_the_cache_variable() -> None:
    """$TURBSIM_CACHE_DIR has one reader: turbsim/physics/table_cache.py."""
    root = Path(turbsim.__file__).resolve().parents[1]
    readers = sorted(
        path.relative_to(root).as_posix()
        for package in ("turbsim", "feedbackseg", "cli")
        for path in (root / package).rglob("*.py")
        if "TURBSIM_CACHE_DIR" in path.read_text(encoding="utf-8")
    )
    assert readers == ["turbsim/physics/table_cache.py"]


# -------------------------------------------------------------------------------- describe
def test_describe_keys_order_units_and_values(reference_params: TurbulenceParams) -> None:
    d = describe(reference_params)
    assert list(d) == list(QUANTITIES)  # the order of `turbsim params`
    assert list(d)[:7] == list(reference_params.to_dict())
    assert d["sigma_r_px"] == pytest.approx(5.597, abs=5e-4)
    assert d["variance_coefficient"] == variance_coefficient(reference_params.q, "spherical")
    assert d["d_over_r0"] == reference_params.aperture_m / theory.r0_m(reference_params)
    assert d["rho"] == reference_params.rho and d["q"] == reference_params.q
    assert QUANTITIES["sigma_r_px"][0] == "px" and QUANTITIES["r0_m"][0] == "m"
    assert QUANTITIES["cn2"][0] == "m^-2/3" and QUANTITIES["sigma_a_rad"][0] == "rad"


def test_description_table_layout(reference_params: TurbulenceParams) -> None:
    lines = description_table(describe(reference_params)).splitlines()
    assert lines[0] == "inputs:" and lines[8] == "derived:" and len(lines) == 21
    row = next(line for line in lines if line.split()[0] == "sigma_r_px")
    assert row.split()[1:3] == ["5.59688", "px"]
    assert row.endswith("std of the displacement, one axis")
    # Values right-aligned in one column.
    ends = {line.index(line.split()[1]) + len(line.split()[1]) for line in lines if ":" not in line}
    assert len(ends) == 1
