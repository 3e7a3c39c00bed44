"""turbsim: atmospheric-turbulence image distortion (a port of the Technion ICCP 2017 simulator).

Public API (loaded lazily, PEP 562: ``import turbsim.shards`` pulls in neither numba nor scipy)::

    TurbulenceParams(cn2, path_length_m, aperture_m, wavelength_m, focal_length_px, height_m, wave)
    aoa_variance(params) -> sigma_A^2 [rad^2]
    correlation_table(rho, wave) -> CorrelationTable (eta, b_par, b_perp)
    tilt_correlation(params, lag_px) -> (b_par, b_perp)
    sample_tilt_field(params, (H, W), rng) -> float32 (2, H, W), [0] row, [1] column shift [px]
    warp_image(image, field, border="clamp") -> warped image
    distort(image, params, rng) -> distorted image

Optional, with torch (``turbsim.augment``, the only module that imports it)::

    RandomTurbulence(recipe, native_size=None, device=None)  # nn.Module: fresh turbulence
                                                             # per image, CPU or GPU

turbsim never imports click, and torch only in ``turbsim.augment``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> the submodule that defines it.
_EXPORTS: dict[str, str] = {
    "CorrelationTable": "turbsim.theory",
    "TurbulenceParams": "turbsim.params",
    "aoa_variance": "turbsim.theory",
    "correlation_table": "turbsim.theory",
    "describe": "turbsim.quantities",
    "blur_image": "turbsim.blur",
    "r0_m": "turbsim.theory",
    "sigma_r_px": "turbsim.theory",
    "distort": "turbsim.field",
    "sample_tilt_field": "turbsim.field",
    "spectral_filter": "turbsim.field",
    "tilt_correlation": "turbsim.theory",
    "variance_coefficient": "turbsim.theory",
    "warp_image": "turbsim.warp",
}

#: Submodules reachable as attributes after a bare ``import turbsim`` (loaded on first use).
_SUBMODULES = frozenset(
    {"augment", "blur", "cityscapes", "diagnostics", "field", "folding", "generate", "params",
     "preview", "quantities", "recipe", "resample", "seeding", "shards", "synthetic", "theory",
     "warp"}
)  # fmt: skip

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        if name in _SUBMODULES:  # `import turbsim; turbsim.theory` works as it did
            return importlib.import_module(f"turbsim.{name}")
        raise AttributeError(f"module 'turbsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
