"""Blur from the same atmosphere: the mean short-exposure OTF beside the rendered tilt (SPEC 8).

The Technion model renders the tilt (the random displacement of each pixel) only. For the same
camera and path the air also blurs: the tilt-removed ("short-exposure") point-spread function,
whose mean transfer function is Fried's (J. Opt. Soc. Am. 56, 1372, 1966, eq. 7.3 of Roggemann &
Welsh, *Imaging through Turbulence*, 1996)::

    M_SE(nu) = exp(-3.44 (x / r0)^(5/3) [1 - alpha (x / D)^(1/3)]),   x = lambda f nu <= D

with ``nu`` the spatial frequency [cycles/px], ``f`` the focal length [px] (so ``x`` is a
separation in the pupil [m]), ``alpha = 1`` in the near field (q = D / sqrt(lambda L) >= 1) and
0.5 in the far field. The aperture adds its diffraction MTF (Goodman, *Introduction to Fourier
Optics*, eq. 6-31), u = x / D::

    M_D(u) = (2 / pi) (acos u - u sqrt(1 - u^2)),   u <= 1;   0 beyond the cut-off

:func:`blur_image` multiplies each channel's spectrum by ``M_D M_SE`` (real, radially symmetric,
so the blur does not move anything: the displacement stays the tilt field's), after reflective
padding wide enough that the periodic convolution of the FFT does not wrap.

Why a *mean* PSF is right here: the instantaneous PSF decorrelates over the isoplanatic angle
theta0, and ``f theta0 << 1 px`` at the BMVC settings (0.06 px at the reference), so every pixel
already averages many independent tilt-removed PSFs while the tilt itself is rendered explicitly.
When ``f theta0`` is many pixels (weak turbulence, short paths) the PSF is random per isoplanatic
patch and the mean PSF is an approximation (``turbsim params`` says so).

Not modelled: per-patch random PSFs, scintillation, sensor noise, chromatic dispersion beyond the
per-channel wavelength option.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np
import scipy.fft
import scipy.special

from turbsim.physics import theory
from turbsim.physics.choices import BLUR_MODES  # noqa: F401  (re-exported)
from turbsim.physics.params import TurbulenceParams
from turbsim.physics.threads import get_num_threads

#: Fried's coefficient of the phase structure function, 6.88 / 2 = 3.44 (Fried 1966).
_FRIED = 3.44
#: Encircled energy of the PSF inside the padding.
PAD_ENERGY = 0.99
#: Transfer values below this are set to 0 (so the FFT's column pass can skip them).
NEGLIGIBLE = 1e-7
_MIN_PAD = 2


def near_field_alpha(params: TurbulenceParams) -> float:
    """alpha of Fried's short-exposure MTF: 1 in the near field (q >= 1), 0.5 in the far field."""
    return 1.0 if params.q >= 1.0 else 0.5


def diffraction_mtf(u: np.ndarray | float) -> np.ndarray:
    """MTF of a circular aperture [1] at u = x / D (x the pupil separation [m]); 0 for u >= 1.

    Goodman, *Introduction to Fourier Optics*, eq. 6-31.
    """
    u = np.clip(np.abs(np.asarray(u, dtype=np.float64)), 0.0, 1.0)
    return (2.0 / math.pi) * (np.arccos(u) - u * np.sqrt(1.0 - u * u))


def short_exposure_mtf(
    x_m: np.ndarray | float, r0_m: float, aperture_m: float, alpha: float
) -> np.ndarray:
    """Fried's mean short-exposure (tilt-removed) MTF [1] at pupil separation ``x_m`` [m].

    ``exp(-3.44 (x/r0)^(5/3) [1 - alpha (x/D)^(1/3)])`` for x <= D; 0 beyond D (the aperture
    passes nothing there anyway).
    """
    x = np.abs(np.asarray(x_m, dtype=np.float64))
    u = np.minimum(x / aperture_m, 1.0)
    exponent = -_FRIED * (x / r0_m) ** (5.0 / 3.0) * (1.0 - alpha * np.cbrt(u))
    return np.where(x <= aperture_m, np.exp(exponent), 0.0)


def long_exposure_mtf(x_m: np.ndarray | float, r0_m: float) -> np.ndarray:
    """Fried's long-exposure atmospheric MTF ``exp(-3.44 (x / r0)^(5/3))`` [1]."""
    x = np.abs(np.asarray(x_m, dtype=np.float64))
    return np.exp(-_FRIED * (x / r0_m) ** (5.0 / 3.0))


def blur_mtf(params: TurbulenceParams, nu: np.ndarray | float) -> np.ndarray:
    """Transfer function of the blur, ``M_D M_SE``, at radial frequency ``nu`` [cycles/px].

    Args:
        params: the path and camera; x = lambda f nu converts ``nu`` into a pupil separation.
        nu: frequencies [cycles/px], any shape.

    Returns:
        float64 array of the shape of ``nu``, 1 at nu = 0, 0 beyond D / (lambda f).
    """
    x = params.wavelength_m * params.focal_length_px * np.abs(np.asarray(nu, np.float64))
    r0 = theory.r0_m(params)
    alpha = near_field_alpha(params)
    return diffraction_mtf(x / params.aperture_m) * short_exposure_mtf(
        x, r0, params.aperture_m, alpha
    )


def cutoff_cycles_per_px(params: TurbulenceParams) -> float:
    """Diffraction cut-off D / (lambda f) [cycles/px]: the blur passes nothing above it."""
    return params.aperture_m / (params.wavelength_m * params.focal_length_px)


#: Points of each quadrature segment of the radial integrals below.
_GRID_POINTS = 4096
#: The atmospheric core of the MTF ends where Fried's long-exposure exponent reaches this
#: (M < 4e-18): x_core = r0 (40 / 3.44)^(3/5) = 4.36 r0.
_CORE_EXPONENT = 40.0
#: The uniform grid from 0 to the cut-off is kept while it puts at least this many points on
#: the core: D / r0 up to 4.36 x 4096 / 160 = 112, every shipped recipe (7.9 .. 40), whose
#: numbers therefore stay bit-identical. Its relative error there is below 2e-4 (1e-5 at the
#: reference, D / r0 = 31.6); the split grid beyond is exact to ~1e-6.
_MIN_CORE_POINTS = 160


def core_cycles_per_px(params: TurbulenceParams) -> float:
    """Frequency [cycles/px] beyond which the atmosphere leaves < 4e-18 of the MTF.

    x_core / (lambda f) with x_core = r0 (40 / 3.44)^(3/5), where Fried's long-exposure MTF
    is exp(-40); the short-exposure MTF falls as fast for x << D.
    """
    x_core = theory.r0_m(params) * (_CORE_EXPONENT / _FRIED) ** 0.6
    return x_core / (params.wavelength_m * params.focal_length_px)


def _radial_grid(params: TurbulenceParams) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Midpoint quadrature of the radial integrals over 0 .. cut-off: (nu [cycles/px], M(nu),
    widths [cycles/px] or None when the grid is uniform).

    Up to D / r0 ~ 112 the grid is uniform (4096 points). Beyond, the MTF is a narrow core of
    width ~ r0 / (lambda f), under-resolved by such a grid (D / r0 = 5e5 put it inside one
    interval), so the core gets its own 4096 points and the rest up to the cut-off (where
    Fried's short-exposure term is negligible but for a sliver near x = D) 4096 more: the result
    holds for any D / r0.
    """
    nu_c = cutoff_cycles_per_px(params)
    nu_core = core_cycles_per_px(params)
    n = _GRID_POINTS
    if nu_core * n / nu_c >= _MIN_CORE_POINTS:
        nu = (np.arange(n) + 0.5) * (nu_c / n)
        return nu, blur_mtf(params, nu), None
    core = (np.arange(n) + 0.5) * (nu_core / n)
    rest = nu_core + (np.arange(n) + 0.5) * ((nu_c - nu_core) / n)
    nu = np.concatenate([core, rest])
    widths = np.concatenate([np.full(n, nu_core / n), np.full(n, (nu_c - nu_core) / n)])
    return nu, blur_mtf(params, nu), widths


def psf_profile(params: TurbulenceParams, r_px: np.ndarray) -> np.ndarray:
    """The continuous blur PSF at radii ``r_px`` [px], normalised to 1 at r = 0.

    The inverse Hankel transform of the MTF: psf(r) ~ int M(nu) J0(2 pi nu r) nu dnu.
    """
    nu, m, widths = _radial_grid(params)
    r = np.atleast_1d(np.asarray(r_px, np.float64))
    weights = m * nu if widths is None else m * nu * widths
    values = scipy.special.j0(2.0 * math.pi * np.outer(r, nu)) @ weights
    return (values / weights.sum()).reshape(np.shape(r_px))


def encircled_energy(params: TurbulenceParams, radius_px: float) -> float:
    """Fraction of the PSF's energy inside ``radius_px`` [px].

    EE(R) = 2 pi R int M(nu) J1(2 pi R nu) dnu for a radially symmetric OTF with M(0) = 1.
    """
    nu, m, widths = _radial_grid(params)
    r = float(radius_px)
    if widths is None:
        d_nu = nu[1] - nu[0]
        return float(
            2.0 * math.pi * r * np.sum(m * scipy.special.j1(2.0 * math.pi * r * nu)) * d_nu
        )
    return float(2.0 * math.pi * r * np.sum(m * scipy.special.j1(2.0 * math.pi * r * nu) * widths))


def blur_fwhm_px(params: TurbulenceParams) -> float:
    """Full width at half maximum [px] of the continuous blur PSF (diffraction x short exposure).

    Valid for any D / r0: from the Airy disc (1.03 lambda f / D, D / r0 -> 0) to the
    long-exposure limit 0.98 lambda f / r0 (D / r0 -> infinity); see :func:`_radial_grid`.
    """
    nu_c = cutoff_cycles_per_px(params)
    r_hi = 1.0 / nu_c
    while psf_profile(params, np.array([r_hi]))[0] > 0.5:
        r_hi *= 2.0
    lo, hi = 0.0, r_hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if psf_profile(params, np.array([mid]))[0] > 0.5:
            lo = mid
        else:
            hi = mid
    return 2.0 * 0.5 * (lo + hi)


def _params_key(params: TurbulenceParams) -> tuple[float | str, ...]:
    return (
        params.cn2,
        params.path_length_m,
        params.aperture_m,
        params.wavelength_m,
        params.focal_length_px,
        params.height_m,
        params.wave,
    )


def _from_key(key: tuple[float | str, ...]) -> TurbulenceParams:
    return TurbulenceParams(*key)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=256)
def _pad_for(key: tuple[float | str, ...]) -> int:
    params = _from_key(key)
    radius = max(float(_MIN_PAD), blur_fwhm_px(params))
    while encircled_energy(params, radius) < PAD_ENERGY and radius < 1e5:
        radius *= 1.1
    return int(math.ceil(radius))


def padding_px(params: TurbulenceParams) -> int:
    """Reflective padding [px] on each side: the radius that holds 99 % of the PSF's energy.

    Content wraps around the periodic FFT grid only from beyond twice that distance, where the
    PSF holds far less than 1 % of its energy.
    """
    return _pad_for(_params_key(params))


@functools.lru_cache(maxsize=16)
def _transfer(
    key: tuple[float | str, ...],
    rows: int,
    cols: int,
    pixel_scale: tuple[float, float] = (1.0, 1.0),
) -> tuple[np.ndarray, int]:
    params = _from_key(key)
    fy = scipy.fft.fftfreq(rows)[:, None]
    fx = scipy.fft.rfftfreq(cols)[None, :]
    if pixel_scale != (1.0, 1.0):  # cycles per image px -> cycles per native (camera) px
        fy, fx = fy * pixel_scale[0], fx * pixel_scale[1]
    transfer = blur_mtf(params, np.hypot(fy, fx))
    transfer[transfer < NEGLIGIBLE] = 0.0
    live = np.nonzero(transfer.max(axis=0) > 0.0)[0]
    keep = int(live[-1]) + 1 if live.size else 1
    transfer = transfer.astype(np.float32)
    transfer.flags.writeable = False
    return transfer, keep


def transfer_function(
    params: TurbulenceParams,
    rows: int,
    cols: int,
    pixel_scale: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """``M_D M_SE`` on the rfft2 grid of a (rows, cols) image: float32 (rows, cols // 2 + 1).

    Values below :data:`NEGLIGIBLE` are set to 0 (at most 2.5e-5 grey levels of 255).

    Args:
        params: the path and camera (``f`` in the camera's pixels).
        rows, cols: the padded image size [px].
        pixel_scale: (s_row, s_col): the image is a resize of the camera's frame by these
            factors (stored / native size), so a frequency of nu cycles per image pixel is
            nu * s cycles per camera pixel. (1, 1): the image is the camera's frame.
    """
    scale = (float(pixel_scale[0]), float(pixel_scale[1]))
    return _transfer(_params_key(params), rows, cols, scale)[0]


def _filter(
    planes: np.ndarray, transfers: list[tuple[np.ndarray, int]], workers: int
) -> np.ndarray:
    """The planes (C, rows, cols) with each one's spectrum multiplied by its transfer function.

    The column transforms run only over the rfft columns where a transfer is not 0 (a pruned
    2-D FFT: exact for the zeroed bins), which halves the work for strong turbulence; channels
    that share one transfer function (the usual case) go through each transform together.
    """
    cols = planes.shape[-1]
    spectrum = scipy.fft.rfft(planes, axis=-1, workers=workers, overwrite_x=True)
    if all(t is transfers[0] for t in transfers):
        transfer, keep = transfers[0]
        band = scipy.fft.fft(spectrum[..., :keep], axis=-2, workers=workers)
        band *= transfer[:, :keep]
        band = scipy.fft.ifft(band, axis=-2, workers=workers, overwrite_x=True)
        return scipy.fft.irfft(band, n=cols, axis=-1, workers=workers)  # zero beyond keep
    out = np.empty(planes.shape, planes.dtype)
    for c, (transfer, keep) in enumerate(transfers):
        band = scipy.fft.fft(spectrum[c, :, :keep], axis=0, workers=workers)
        band *= transfer[:, :keep]
        band = scipy.fft.ifft(band, axis=0, workers=workers, overwrite_x=True)
        out[c] = scipy.fft.irfft(band, n=cols, axis=-1, workers=workers)
    return out


def blur_image(
    image: np.ndarray,
    params: TurbulenceParams,
    channel_wavelengths_m: tuple[float, ...] | None = None,
) -> np.ndarray:
    """Blur ``image`` with the mean short-exposure PSF of ``params`` (diffraction included).

    Convention: the PSF is centred and radially symmetric, so the blur moves no content (the
    displacement of a distorted image stays the tilt field's); its integral is 1, so a constant
    image stays constant. Deterministic (no randomness). Each channel's spectrum is multiplied
    by ``M_D M_SE`` after symmetric (reflective) padding by :func:`padding_px` on every side.

    Args:
        image: (H, W) or (H, W, C) array, uint8 or float (float32/float64), H, W >= 2.
        params: the path and camera (r0, D, lambda, f, q).
        channel_wavelengths_m: optional wavelength [m] of each channel (e.g. R, G, B = 600e-9,
            550e-9, 450e-9): each channel is blurred with ``params`` at its own wavelength
            (r0 grows as lambda^(6/5), the diffraction cut-off falls as 1/lambda). The tilt is
            achromatic in this model (geometric optics), so only the blur is chromatic.

    Returns:
        The blurred image, same shape and dtype (uint8 rounded to nearest and clipped).
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image must be (H, W) or (H, W, C) with H, W >= 2, got {image.shape}")
    if image.dtype != np.uint8 and image.dtype.kind != "f":
        raise TypeError(f"image must be uint8 or float, got {image.dtype}")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channel_wavelengths_m is None:
        per_channel = [params] * channels
    elif len(channel_wavelengths_m) != channels:
        raise ValueError(
            f"channel_wavelengths_m has {len(channel_wavelengths_m)} values for {channels} "
            "channel(s)"
        )
    else:
        per_channel = [replace(params, wavelength_m=float(w)) for w in channel_wavelengths_m]
    height, width = image.shape[:2]
    # A PSF wider than the image (absurd apertures) needs no more than one image of padding:
    # beyond that the symmetric extension only repeats the frame (bounded memory).
    pad = min(max(padding_px(p) for p in per_channel), max(height, width))
    rows = scipy.fft.next_fast_len(height + 2 * pad, real=True)
    cols = scipy.fft.next_fast_len(width + 2 * pad, real=True)
    work = np.float64 if image.dtype == np.float64 else np.float32
    chw = image[None] if image.ndim == 2 else np.moveaxis(image, 2, 0)
    extra = ((0, 0), (pad, rows - height - pad), (pad, cols - width - pad))
    planes = np.pad(chw.astype(work, copy=False), extra, mode="symmetric")
    transfers = [_transfer(_params_key(p), rows, cols) for p in per_channel]
    filtered = _filter(planes, transfers, get_num_threads())
    out = filtered[:, pad : pad + height, pad : pad + width]
    out = out[0] if image.ndim == 2 else np.moveaxis(out, 0, 2)
    if image.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out, dtype=image.dtype)
