"""Every quantity of a path and camera with its unit: the table of ``turbsim params``.

:func:`describe` gathers the inputs (:class:`~turbsim.physics.params.TurbulenceParams`), the
geometry (params), the tilt and atmosphere theory (:mod:`turbsim.physics.theory`) and the blur
(:mod:`turbsim.physics.blur`) into one dict; :data:`QUANTITIES` gives each key's unit and meaning.
``TurbulenceParams.summary()`` returns the same dict.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from turbsim.physics.blur import blur_fwhm_px
from turbsim.physics.params import TurbulenceParams
from turbsim.physics.theory import (
    r0_m,
    sigma_a_rad,
    sigma_r_px,
    theta0_rad,
    variance_coefficient,
)

#: Every key of :func:`describe`, in its order -> (unit, meaning). Inputs first.
QUANTITIES: dict[str, tuple[str, str]] = {
    "cn2": ("m^-2/3", "refractive-index structure constant Cn2"),
    "path_length_m": ("m", "camera-to-scene range L"),
    "aperture_m": ("m", "aperture diameter D"),
    "wavelength_m": ("m", "wavelength lambda"),
    "focal_length_px": ("px", "focal length f"),
    "height_m": ("m", "height h of the path above ground"),
    "wave": ("", "wave model"),
    "theta_d_rad": ("rad", "theta_D = D / L"),
    "f_theta_d_px": ("px", "f theta_D: pixels per unit of eta"),
    "outer_scale_m": ("m", "outer scale L0 = 0.4 h"),
    "rho": ("1", "rho = L0 / D: shape of the correlation"),
    "q": ("1", "q = D / sqrt(lambda L)"),
    "variance_coefficient": ("1", "c(q) in sigma_A^2 = c Cn2 L D^-1/3"),
    "sigma_a_rad": ("rad", "std of the angle of arrival, one axis"),
    "sigma_r_px": ("px", "std of the displacement, one axis"),
    "r0_m": ("m", "Fried parameter r0"),
    "d_over_r0": ("1", "D / r0"),
    "theta0_px": ("px", "f theta0: isoplanatic angle in pixels"),
    "blur_fwhm_px": ("px", "FWHM of the mean short-exposure PSF (with diffraction)"),
}

#: Keys of the fold fractions (:meth:`turbsim.views.folding.FoldEstimate.to_dict`), when measured:
#: a third section of :func:`description_table`.
FOLD_QUANTITIES: dict[str, tuple[str, str]] = {
    "native_size": ("px", "frame size of the fields (the camera's pixels)"),
    "fold_fraction": ("1", "fraction of pixels where p + F(p) folds (det J <= 0)"),
    "fold_fraction_stderr": ("1", "its standard error over the fields"),
    "stored_size": ("px", "stored size: the field area-averaged to it"),
    "fold_fraction_stored": ("1", "fold fraction of the displacement stored images show"),
    "fold_fraction_stored_stderr": ("1", "its standard error over the fields"),
    "fold_fields": ("1", "Monte Carlo fields of the fold fractions"),
}

#: The keys of :func:`describe` that are TurbulenceParams inputs (the rest are derived).
INPUT_KEYS: tuple[str, ...] = tuple(f.name for f in fields(TurbulenceParams))


def describe(params: TurbulenceParams) -> dict[str, Any]:
    """Inputs and derived quantities of ``params``, for reports (``turbsim params``).

    Returns:
        A JSON-serialisable dict: the constructor arguments (:meth:`TurbulenceParams.to_dict`),
        then theta_d_rad, f_theta_d_px, outer_scale_m, rho, q, variance_coefficient,
        sigma_a_rad, sigma_r_px, r0_m, d_over_r0, theta0_px and blur_fwhm_px; units and
        meanings in :data:`QUANTITIES`.
    """
    r0 = r0_m(params)
    return {
        **params.to_dict(),
        "theta_d_rad": params.theta_d_rad,
        "f_theta_d_px": params.f_theta_d_px,
        "outer_scale_m": params.outer_scale_m,
        "rho": params.rho,
        "q": params.q,
        "variance_coefficient": variance_coefficient(params.q, params.wave),
        "sigma_a_rad": sigma_a_rad(params),
        "sigma_r_px": sigma_r_px(params),
        "r0_m": r0,
        "d_over_r0": params.aperture_m / r0,
        "theta0_px": params.focal_length_px * theta0_rad(params),
        "blur_fwhm_px": blur_fwhm_px(params),
    }


def _format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"{value[0]}x{value[1]}"  # a size (H, W)
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def description_table(description: dict[str, Any]) -> str:
    """Aligned text table of a :func:`describe` dict: inputs, then derived quantities.

    One row per key: name, value (6 significant digits), unit and meaning (:data:`QUANTITIES`),
    under the headings ``inputs:`` and ``derived:``, then the fold fractions if the dict holds
    them (:data:`FOLD_QUANTITIES`, aligned on their own); no trailing newline.
    """
    fold = [k for k in description if k in FOLD_QUANTITIES]
    sections = {
        "inputs": [k for k in description if k in INPUT_KEYS],
        "derived": [k for k in description if k not in INPUT_KEYS and k not in fold],
    }
    lines = _rows(description, sections, QUANTITIES)
    if fold:  # aligned on its own, so the table above reads as it always did
        title = f"fold fraction (Monte Carlo over {description.get('fold_fields', '?')} fields)"
        lines += _rows(description, {title: fold}, FOLD_QUANTITIES)
    return "\n".join(lines)


def _rows(
    description: dict[str, Any],
    sections: dict[str, list[str]],
    units: dict[str, tuple[str, str]],
) -> list[str]:
    """The aligned lines of the sections (title -> keys) of a description."""
    rows = {
        key: (key, _format_value(description[key]), *units.get(key, ("", "")))
        for keys in sections.values()
        for key in keys
    }
    widths = [max(len(row[i]) for row in rows.values()) for i in range(3)]
    lines = []
    for title, keys in sections.items():
        lines.append(f"{title}:")
        for key in keys:
            name, value, unit, meaning = rows[key]
            line = f"  {name:<{widths[0]}}  {value:>{widths[1]}}  {unit:<{widths[2]}}  {meaning}"
            lines.append(line.rstrip())
    return lines


def mean_psf_note(description: dict[str, Any]) -> str | None:
    """A warning line when f theta0 > 1 px: the PSF then varies from patch to patch, and the
    mean short-exposure PSF that turbsim's blur uses is an approximation (SPEC section 8)."""
    theta0 = description.get("theta0_px")
    if theta0 is None or theta0 <= 1.0:
        return None
    return (
        f"note: f theta0 = {theta0:.3g} px > 1 px: the instantaneous PSF is random per "
        "isoplanatic patch; the mean short-exposure blur is an approximation here"
    )


#: :func:`field_scale_warning` warns above this sigma_r / frame width [1].
LARGE_FIELD_FRACTION = 0.01


def field_scale_warning(draws: list[TurbulenceParams], frame_size: tuple[int, int]) -> str | None:
    """A warning when the tilt field is large against the frame, else None.

    The displacement a frame shows scales with the focal length in pixels (sigma_r = f sigma_A);
    above :data:`LARGE_FIELD_FRACTION` of the frame width the field folds at a large fraction
    of the pixels (e.g. ~0.4 for sigma_r = 1.3 % of 512 px; :mod:`turbsim.views.folding`), so the
    distortion has no inverse. The usual cause is a focal length left at the recipe's value for
    frames smaller than the recipe's camera.

    Args:
        draws: parameter draws of the recipe (e.g. ``recipe.sample_params`` of a fixed
            generator); the median sigma_r is judged.
        frame_size: (H, W) [px] at which the fields are rendered (the native frame).
    """
    if not draws:
        return None
    sigmas = sorted(sigma_r_px(p) for p in draws)
    sigma = sigmas[len(sigmas) // 2]
    width = int(frame_size[1])
    if sigma <= LARGE_FIELD_FRACTION * width:
        return None
    focal = sorted(p.focal_length_px for p in draws)[len(draws) // 2]
    scaled = focal * LARGE_FIELD_FRACTION * width / sigma
    return (
        f"the tilt field is large against the {frame_size[0]}x{width} px frame: sigma_r = "
        f"{sigma:.3g} px is {100 * sigma / width:.2g} % of its width (above "
        f"{100 * LARGE_FIELD_FRACTION:g} %), so it folds at many pixels and has no inverse; "
        f"if the frames were scaled down from a larger camera, scale --focal-length "
        f"({focal:g} px) by the same factor (<= {scaled:.4g} px keeps sigma_r under "
        f"{100 * LARGE_FIELD_FRACTION:g} %), else lower --cn2 or --path-length"
    )
