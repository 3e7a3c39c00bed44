"""TurbulenceParams: validation and the derived quantities of SPEC-turbsim section 1."""

from __future__ import annotations

import math

import pytest

from turbsim import TurbulenceParams

FIELDS = ["cn2", "path_length_m", "aperture_m", "wavelength_m", "focal_length_px", "height_m"]


def test_reference_derived_quantities(reference_params: TurbulenceParams) -> None:
    p = reference_params
    assert p.theta_d_rad == pytest.approx(0.3 / 5.6 / 2000, rel=1e-12)
    assert p.f_theta_d_px == pytest.approx(2.009, abs=5e-4)
    assert p.rho == pytest.approx(29.87, abs=5e-3)
    assert p.q == pytest.approx(1.615, abs=5e-4)
    assert p.outer_scale_m == pytest.approx(1.6)
    assert p.sigma_r_px == pytest.approx(5.597, abs=5e-4)
    # Fried parameter, spherical wave: (0.423 k^2 Cn2 L 3/8)^(-3/5).
    k = 2 * math.pi / 550e-9
    assert p.r0_m == pytest.approx((0.423 * k**2 * 1e-12 * 2000 * 3 / 8) ** -0.6, rel=1e-12)
    s = p.summary()
    assert s["sigma_r_px"] == p.sigma_r_px and s["cn2"] == 1e-12 and s["wave"] == "spherical"


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, "abc", None])
def test_unphysical_values_are_refused_naming_the_field(name: str, bad: object) -> None:
    kwargs = {"cn2": 1e-12, "path_length_m": 2000.0, "aperture_m": 0.05}
    kwargs[name] = bad
    with pytest.raises(ValueError, match=name):
        TurbulenceParams(**kwargs)  # type: ignore[arg-type]


def test_bad_wave_is_refused() -> None:
    with pytest.raises(ValueError, match="wave"):
        TurbulenceParams(cn2=1e-12, path_length_m=2000.0, aperture_m=0.05, wave="cylinder")  # type: ignore[arg-type]


def test_frozen_and_with_cn2(reference_params: TurbulenceParams) -> None:
    with pytest.raises(AttributeError):
        reference_params.cn2 = 2e-12  # type: ignore[misc]
    q = reference_params.with_cn2(4e-12)
    assert q.cn2 == 4e-12 and q.shape_key() == reference_params.shape_key()
    assert q.sigma_r_px == pytest.approx(2 * reference_params.sigma_r_px, rel=1e-12)


def test_integers_are_accepted_as_floats() -> None:
    p = TurbulenceParams(cn2=1e-12, path_length_m=2000, aperture_m=1, focal_length_px=1000)
    assert isinstance(p.path_length_m, float) and p.path_length_m == 2000.0
