"""TurbulenceParams: validation and the pure geometry of SPEC-turbsim section 1; params.py holds
no theory (the import rule of issue 10)."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import pytest

from turbsim import TurbulenceParams
from turbsim.physics import params as params_module
from turbsim.physics.params import ParamsError
from turbsim.physics.quantities import describe
from turbsim.physics.theory import r0_m, sigma_r_px

FIELDS = ["cn2", "path_length_m", "aperture_m", "wavelength_m", "focal_length_px", "height_m"]


def test_reference_derived_quantities(reference_params: TurbulenceParams) -> None:
    p = reference_params
    assert p.theta_d_rad == pytest.approx(0.3 / 5.6 / 2000, rel=1e-12)
    assert p.f_theta_d_px == pytest.approx(2.009, abs=5e-4)
    assert p.rho == pytest.approx(29.87, abs=5e-3)
    assert p.q == pytest.approx(1.615, abs=5e-4)
    assert p.outer_scale_m == pytest.approx(1.6)
    assert p.q == pytest.approx(p.aperture_m / math.sqrt(550e-9 * 2000), rel=1e-15)
    assert sigma_r_px(p) == pytest.approx(5.597, abs=5e-4)
    # Fried parameter, spherical wave: (0.423 k^2 Cn2 L 3/8)^(-3/5).
    k = 2 * math.pi / 550e-9
    assert r0_m(p) == pytest.approx((0.423 * k**2 * 1e-12 * 2000 * 3 / 8) ** -0.6, rel=1e-12)
    s = describe(p)
    assert s["sigma_r_px"] == sigma_r_px(p) and s["cn2"] == 1e-12 and s["wave"] == "spherical"


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, "abc", None])
def test_unphysical_values_are_refused_naming_the_field(name: str, bad: object) -> None:
    kwargs = {"cn2": 1e-12, "path_length_m": 2000.0, "aperture_m": 0.05}
    kwargs[name] = bad
    with pytest.raises(ValueError, match=name) as caught:
        TurbulenceParams(**kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, ParamsError) and caught.value.key == name


def test_bad_wave_is_refused() -> None:
    with pytest.raises(ParamsError, match="wave") as caught:
        TurbulenceParams(cn2=1e-12, path_length_m=2000.0, aperture_m=0.05, wave="cylinder")  # type: ignore[arg-type]
    assert caught.value.key == "wave"


def test_frozen_and_with_cn2(reference_params: TurbulenceParams) -> None:
    with pytest.raises(AttributeError):
        reference_params.cn2 = 2e-12  # type: ignore[misc]
    q = reference_params.with_cn2(4e-12)
    assert q.cn2 == 4e-12 and q.shape_key() == reference_params.shape_key()
    assert sigma_r_px(q) == pytest.approx(2 * sigma_r_px(reference_params), rel=1e-12)


def test_integers_are_accepted_as_floats() -> None:
    p = TurbulenceParams(cn2=1e-12, path_length_m=2000, aperture_m=1, focal_length_px=1000)
    assert isinstance(p.path_length_m, float) and p.path_length_m == 2000.0


@pytest.mark.parametrize("name", ["sigma_r_px", "sigma_a_rad", "r0_m"])
def test_moved_theory_attributes_name_their_replacement(
    reference_params: TurbulenceParams, name: str
) -> None:
    with pytest.raises(AttributeError, match=r"turbsim\.theory\.\w+\(params"):
        getattr(reference_params, name)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        reference_params.nonsense  # noqa: B018


def test_params_pickle_round_trip(reference_params: TurbulenceParams) -> None:
    import pickle

    copy = pickle.loads(pickle.dumps(reference_params))
    assert copy == reference_params and copy.shape_key() == reference_params.shape_key()


# ------------------------------------------------------------------------ no theory import
def test_params_module_imports_no_theory_statically() -> None:
    """Not even inside a function: params.py is inputs and geometry; theory imports it."""
    tree = ast.parse(Path(params_module.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
            imported |= {f"{node.module}.{alias.name}" for alias in node.names}
    assert "turbsim.physics.theory" not in imported and not any("theory" in m for m in imported)
    assert {"math", "dataclasses", "turbsim.physics.choices"} <= imported
    assert not any(m.startswith("turbsim.shards") for m in imported)  # physics, not storage


def test_importing_and_using_params_loads_no_theory_or_scipy() -> None:
    code = (
        "import sys\n"
        "from turbsim.physics.params import TurbulenceParams\n"
        "p = TurbulenceParams(cn2=1e-12, path_length_m=2000.0, aperture_m=0.05)\n"
        "p.rho, p.q, p.f_theta_d_px, p.shape_key(), p.to_dict(), p.with_cn2(2e-12)\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    loaded = set(result.stdout.split())
    assert "turbsim.physics.params" in loaded
    assert loaded.isdisjoint(
        {"turbsim.physics.theory", "turbsim.physics.table_cache", "scipy", "numba"}
    )


def test_summary_is_the_theory_description(reference_params) -> None:
    """params.summary() (a public name) is quantities.describe(params), reached without a
    cycle; it carries r0, theta0 and the blur's FWHM (issue 13's contract)."""
    summary = reference_params.summary()
    assert summary == describe(reference_params)
    assert {"r0_m", "d_over_r0", "theta0_px", "blur_fwhm_px"} <= set(summary)
    assert summary["sigma_r_px"] == pytest.approx(5.597, abs=1e-3)
