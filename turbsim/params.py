"""Camera and atmosphere parameters of the turbulence model, and the quantities derived from them.

The model is that of Schwartzman, Alterman, Zamir and Schechner, "Turbulence-induced 2D correlated
image distortion", ICCP 2017 (horizontal path, constant Cn2, von Karman spectrum with outer scale
L0 = 0.4 h). Every length carries its unit in its name: ``_m`` metres, ``_px`` pixels,
``_rad`` radians.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Wave = Literal["spherical", "plane"]
WAVES: tuple[str, ...] = ("spherical", "plane")

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


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
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

    The reference camera of the original code (300 mm, f/5.6, 4 um pixels, 2 km, h = 4 m,
    Cn2 = 1e-12) gives ``sigma_r_px`` = 5.597 px.
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
            raise ValueError(f"wave must be one of {WAVES}, got {self.wave!r}")

    # ----------------------------------------------------------------- derived quantities
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

    @property
    def variance_coefficient(self) -> float:
        """c(q) of sigma_A^2 = c Cn2 L D^(-1/3) [1] (SPEC section 2)."""
        from turbsim.theory import variance_coefficient

        return variance_coefficient(self.q, self.wave)

    @property
    def sigma_a_rad(self) -> float:
        """Standard deviation of the angle of arrival on one axis, sigma_A [rad]."""
        from turbsim.theory import aoa_variance

        return math.sqrt(aoa_variance(self))

    @property
    def sigma_r_px(self) -> float:
        """Standard deviation of the image displacement on one axis, f sigma_A [px]."""
        return self.focal_length_px * self.sigma_a_rad

    @property
    def r0_m(self) -> float:
        """Fried parameter r0 [m] of the path (Kolmogorov; spherical wave has the 3/8 factor).

        r0 = (0.423 k^2 Cn2 L a)^(-3/5) with k = 2 pi / lambda and a = 3/8 (spherical) or 1
        (plane), Andrews & Phillips, Laser Beam Propagation through Random Media, eq. 6.62.
        """
        k = 2.0 * math.pi / self.wavelength_m
        a = 3.0 / 8.0 if self.wave == "spherical" else 1.0
        return (0.423 * k * k * self.cn2 * self.path_length_m * a) ** (-3.0 / 5.0)

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

    def summary(self) -> dict[str, float | str]:
        """Inputs and derived quantities, for reports (`turbsim params`)."""
        return {
            **self.to_dict(),
            "theta_d_rad": self.theta_d_rad,
            "f_theta_d_px": self.f_theta_d_px,
            "outer_scale_m": self.outer_scale_m,
            "rho": self.rho,
            "q": self.q,
            "variance_coefficient": self.variance_coefficient,
            "sigma_a_rad": self.sigma_a_rad,
            "sigma_r_px": self.sigma_r_px,
            "r0_m": self.r0_m,
            "d_over_r0": self.aperture_m / self.r0_m,
        }
