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

Rooms (each may import only the rooms above it; tests/test_import_rules.py holds the table)::

    physics/    the model: parameters, theory, tilt fields, warp, blur (no storage, no I/O)
    shards/     the on-disk contract: HDF5 shards, sidecars, the manifest, verify
    sources/    the inputs: Cityscapes trees, label maps, JPEG checks, synthetic street scenes
    pipeline/   ``turbsim generate``: recipe -> plan -> render -> executors -> output folder
    views/      what is shown of the data: previews, field pictures, diagnostics, export
    augment.py  fresh turbulence in torch (the one torch module)

Beside them: ``errors`` (the user-error base), ``_files`` (the atomic writer), ``seeding`` (the
seed streams of samples and scenes). ``turbsim.params``, ``turbsim.theory``, ``turbsim.field``,
``turbsim.warp``, ``turbsim.blur`` and ``turbsim.recipe`` stay importable by those public paths
(:data:`PUBLIC_MODULES`); they are the modules of their rooms.
"""

from __future__ import annotations

import importlib
from typing import Any

from turbsim import _aliases

__version__ = "0.1.0"

#: Public name -> the submodule that defines it.
_EXPORTS: dict[str, str] = {
    "CorrelationTable": "turbsim.physics.theory",
    "TurbulenceParams": "turbsim.physics.params",
    "aoa_variance": "turbsim.physics.theory",
    "correlation_table": "turbsim.physics.theory",
    "describe": "turbsim.physics.quantities",
    "blur_image": "turbsim.physics.blur",
    "r0_m": "turbsim.physics.theory",
    "sigma_r_px": "turbsim.physics.theory",
    "distort": "turbsim.physics.field",
    "sample_tilt_field": "turbsim.physics.field",
    "spectral_filter": "turbsim.physics.field",
    "tilt_correlation": "turbsim.physics.theory",
    "variance_coefficient": "turbsim.physics.theory",
    "warp_image": "turbsim.physics.warp",
}

#: The rooms of the package, reachable as attributes after a bare ``import turbsim``.
_ROOMS = frozenset({"augment", "physics", "pipeline", "shards", "sources", "views"})

#: Public module paths (the API code outside the repository imports) -> the module of its room.
PUBLIC_MODULES: dict[str, str] = {
    "turbsim.blur": "turbsim.physics.blur",
    "turbsim.field": "turbsim.physics.field",
    "turbsim.params": "turbsim.physics.params",
    "turbsim.recipe": "turbsim.pipeline.recipe",
    "turbsim.theory": "turbsim.physics.theory",
    "turbsim.warp": "turbsim.physics.warp",
}
_aliases.install(PUBLIC_MODULES)

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        if name in _ROOMS or f"turbsim.{name}" in PUBLIC_MODULES:  # `turbsim.theory` works too
            return importlib.import_module(f"turbsim.{name}")
        raise AttributeError(f"module 'turbsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
