"""Camera and atmosphere parameters of the turbulence model, and their pure geometry.

The model is that of Schwartzman, Alterman, Zamir and Schechner, "Turbulence-induced 2D correlated
image distortion", ICCP 2017 (horizontal path, constant Cn2, von Karman spectrum with outer scale
L0 = 0.4 h). Every length carries its unit in its name: ``_m`` metres, ``_px`` pixels,
``_rad`` radians.

This module holds the inputs and what follows from them by geometry alone (theta_D, f theta_D,
rho, q). The turbulence theory (the AoA variance, sigma_r, r0;
:func:`turbsim.physics.quantities.describe`) lives in :mod:`turbsim.physics.theory`, which imports
this module, never the other way round.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from turbsim.errors import TurbsimError
from turbsim.physics.choices import WAVES

__all__ = [
    "OUTER_SCALE_PER_HEIGHT",
    "POSITIVE_FIELDS",
    "WAVES",
    "ParamsError",
    "TurbulenceParams",
    "Wave",
    "shape_value",
]

Wave = Literal["spherical", "plane"]

#: The numeric TurbulenceParams fields (all finite and > 0).
POSITIVE_FIELDS: tuple[str, ...] = (
    "cn2",
    "path_length_m",
    "aperture_m",
    "wavelength_m",
    "focal_length_px",
    "height_m",
)

#: Outer scale of turbulence as a fraction of the path height: L0 = 0.4 h (Matlab original).
OUTER_SCALE_PER_HEIGHT = 0.4

#: Theory-dependent attributes that TurbulenceParams no longer has -> their replacement.
_MOVED_TO_THEORY: dict[str, str] = {
    "variance_coefficient": "turbsim.theory.variance_coefficient(params.q, params.wave)",
    "sigma_a_rad": "turbsim.theory.sigma_a_rad(params)",
    "sigma_r_px": "turbsim.theory.sigma_r_px(params)",
    "r0_m": "turbsim.theory.r0_m(params)",
}


class ParamsError(TurbsimError, ValueError):
    """An invalid :class:`TurbulenceParams` input; the message is one line naming the field.

    Attributes:
        key: the TurbulenceParams field at fault (e.g. ``"cn2"``, ``"wave"``). A CLI maps it to
            its flag.
    """

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ParamsError(f"{name} must be a number, got {value!r}", name) from None
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ParamsError(f"{name} must be finite and > 0, got {value!r}", name)
    return value


def shape_value(x: float) -> float:
    """``x`` rounded to 12 significant digits: the key of the cached correlation tables and
    filters, so that one value reached along different float paths (e.g. rho = 0.4 h / D for
    two (h, D) pairs of the same ratio) shares one table. A relative change below 5e-13."""
    return float(f"{x:.12g}")


@dataclass(frozen=True)
class TurbulenceParams:
    """Physical parameters of one imaging geometry through turbulence.

    Attributes:
        cn2: refractive-index structure constant Cn2 [m^(-2/3)], typically 1e-15 .. 1e-11.
        path_length_m: camera-to-scene range L [m] (2 - 10 km in the original).
        aperture_m: aperture diameter D [m] (focal length / f-number).
        wavelength_m: wavelength lambda [m].
        focal_length_px: focal length f in pixels (focal length / pixel pitch) [px].
        height_m: height h of the path above ground [m]; outer scale L0 = 0.4 h.
        wave: "spherical" (point sources, the default) or "plane".

    Raises:
        ParamsError: (a ValueError) naming the field, for a non-number, a value that is not
            finite and > 0, or an unknown wave.

    The reference camera of the original code (300 mm, f/5.6, 4 um pixels, 2 km, h = 4 m,
    Cn2 = 1e-12) gives ``turbsim.physics.theory.sigma_r_px(params)`` = 5.597 px.
    """

    cn2: float
    path_length_m: float
    aperture_m: float
    wavelength_m: float = 550e-9
    focal_length_px: float = 75000.0
    height_m: float = 4.0
    wave: Wave = field(default="spherical")

    def __post_init__(self) -> None:
        for name in POSITIVE_FIELDS:
            object.__setattr__(self, name, _check_positive(name, getattr(self, name)))
        if self.wave not in WAVES:
            raise ParamsError(f"wave must be one of {WAVES}, got {self.wave!r}", "wave")

    def __getattr__(self, name: str) -> Any:
        """Only reached for missing attributes: name the replacement of a moved one."""
        moved = _MOVED_TO_THEORY.get(name)
        if moved is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        raise AttributeError(f"TurbulenceParams.{name} moved to the theory: use {moved}")

    # ------------------------------------------------------------------------- geometry
    @property
    def theta_d_rad(self) -> float:
        """Angle subtended by the aperture at the range, theta_D = D / L [rad]."""
        return self.aperture_m / self.path_length_m

    @property
    def f_theta_d_px(self) -> float:
        """f theta_D [px]: image-plane separation of one unit of eta = theta / theta_D."""
        return self.focal_length_px * self.theta_d_rad

    @property
    def outer_scale_m(self) -> float:
        """Outer scale of turbulence L0 = 0.4 h [m]."""
        return OUTER_SCALE_PER_HEIGHT * self.height_m

    @property
    def rho(self) -> float:
        """rho = L0 / D [1]: the only parameter of the correlation shape."""
        return self.outer_scale_m / self.aperture_m

    @property
    def fresnel_length_m(self) -> float:
        """Fresnel length sqrt(lambda L) [m]."""
        return math.sqrt(self.wavelength_m * self.path_length_m)

    @property
    def q(self) -> float:
        """q = D / sqrt(lambda L) [1]: aperture in Fresnel lengths."""
        return self.aperture_m / self.fresnel_length_m

    # ----------------------------------------------------------------------- helpers
    def with_cn2(self, cn2: float) -> TurbulenceParams:
        """A copy with another Cn2 [m^(-2/3)] (the shape of the field does not change)."""
        return replace(self, cn2=cn2)

    def shape_key(self) -> tuple[float, float, str]:
        """What the correlation *shape* on the pixel grid depends on: (f theta_D, rho, wave),
        each number rounded by :func:`shape_value`.

        Cn2 only scales the amplitude; the cached spectral filter is keyed by this.
        """
        return (shape_value(self.f_theta_d_px), shape_value(self.rho), self.wave)

    def to_dict(self) -> dict[str, Any]:
        """The constructor arguments as a plain dict (JSON-serialisable)."""
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """Inputs and derived quantities with units in their names: ``turbsim.describe(self)``.

        A convenience for reports (``turbsim params``). This module holds no theory: the call
        goes through the package's lazy public API, so ``turbsim.physics.params`` never imports
        ``turbsim.physics.theory`` and the import graph stays acyclic.
        """
        import turbsim

        return turbsim.describe(self)


#: The reference camera and atmosphere of the original code (SPEC section 1): a 300 mm f/5.6
#: lens (D = 53.6 mm) with 4 um pixels (f = 75000 px), L = 2 km at h = 4 m, Cn2 = 1e-12,
#: lambda = 550 nm, spherical wave: sigma_r = 5.597 px. The one source of the defaults of the
#: recipes and of the command-line flags.
REFERENCE_PARAMS = TurbulenceParams(cn2=1e-12, path_length_m=2000.0, aperture_m=0.3 / 5.6)
