"""turbsim: atmospheric-turbulence image distortion (a port of the Technion ICCP 2017 simulator).

Public API::

    TurbulenceParams(cn2, path_length_m, aperture_m, wavelength_m, focal_length_px, height_m, wave)
    aoa_variance(params) -> sigma_A^2 [rad^2]
    correlation_table(rho, wave) -> CorrelationTable (eta, b_par, b_perp)
    tilt_correlation(params, lag_px) -> (b_par, b_perp)
    sample_tilt_field(params, (H, W), rng) -> float32 (2, H, W), [0] row, [1] column shift [px]
    warp_image(image, field, border="clamp") -> warped image
    distort(image, params, rng) -> distorted image

turbsim never imports torch or click.
"""

from turbsim.field import distort, sample_tilt_field, spectral_filter
from turbsim.params import TurbulenceParams
from turbsim.theory import (
    CorrelationTable,
    aoa_variance,
    correlation_table,
    tilt_correlation,
    variance_coefficient,
)
from turbsim.warp import warp_image

__version__ = "0.1.0"

__all__ = [
    "CorrelationTable",
    "TurbulenceParams",
    "__version__",
    "aoa_variance",
    "correlation_table",
    "distort",
    "sample_tilt_field",
    "spectral_filter",
    "tilt_correlation",
    "variance_coefficient",
    "warp_image",
]
