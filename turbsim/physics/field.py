"""Random tilt (displacement) fields with the theory's variance and anisotropic correlation.

The recipe is that of the Matlab code of Schwartzman et al., ICCP 2017 (calc_correlation_Cv.m,
fft_filter_Kw.m, gen_randomfield_fft.m), generalised to any H x W (SPEC-turbsim section 4):

1. unit-variance covariance images C_cc, C_rr, C_cr on a 2H x 2W lag grid;
2. separable symmetric Blackman taper;
3. spectra S = Re FFT(C W) (diagonal clipped at 0) and their per-frequency 2x2 square root K;
4. field = IFFT(K Z) for white noise Z, central H x W block, scaled to unit ensemble variance
   and multiplied by sigma_r.

Steps 1-3 depend only on (f theta_D, rho, wave, H, W) and are cached in memory
(:func:`spectral_filter`). Per field only the noise, two pruned inverse real FFTs and a scale
remain. The noise is drawn directly in the frequency domain on the rfft half plane, with the
Hermitian bookkeeping done so that the result has exactly the law of the original's
``real(ifft2(K .* fft2(randn)))`` (a test holds the two to float precision on the same noise).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import scipy.fft as sfft

from turbsim.physics.blur import blur_image
from turbsim.physics.choices import BLUR_MODES, NORMALIZE_CHOICES
from turbsim.physics.params import TurbulenceParams
from turbsim.physics.theory import correlation_table, covariance_images, sigma_r_px
from turbsim.physics.threads import get_num_threads, set_num_threads  # noqa: F401  (public here too)
from turbsim.physics.warp import warp_image

Normalize = Literal["ensemble", "per-field"]

#: The noise is drawn in this many independent streams (fixed, so results do not depend on the
#: thread count).
_NOISE_STREAMS = 16


@dataclass(frozen=True, eq=False)
class SpectralFilter:
    """Frequency response of the field generator on the rfft half plane of the 2H x 2W grid.

    Attributes:
        shape: output (H, W) [px].
        k_cc, k_rr: (2H, W + 1) float32: diagonal of the 2x2 square root K of the spectral
            matrix, pre-scaled so that standard complex normal noise yields unit ensemble
            variance per component (columns 0 and W carry the extra sqrt(2) of the Hermitian
            fold).
        k_cr: (2, 2H, W + 1) float32: the off-diagonal K_cr scaled for the column component [0]
            and for the row component [1].
        variance_col, variance_row: ensemble variance of the unscaled central field,
            sum(K11^2 + K12^2) / (4HW) and sum(K22^2 + K12^2) / (4HW) (gen_randomfield_fft.m).
        row0, col0: top-left corner of the kept central block on the 2H x 2W grid.
    """

    shape: tuple[int, int]
    k_cc: np.ndarray
    k_rr: np.ndarray
    k_cr: np.ndarray
    variance_col: float
    variance_row: float
    row0: int
    col0: int


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (H, W), got {shape!r}") from None
    if h < 2 or w < 2 or (h, w) != tuple(shape):
        raise ValueError(f"shape must be two integers >= 2, got {shape!r}")
    return h, w


def blackman(n: int) -> np.ndarray:
    """Symmetric Blackman window of length n (Matlab ``blackman(n)``):
    w[k] = 0.42 - 0.5 cos(2 pi k / (n-1)) + 0.08 cos(4 pi k / (n-1)), k = 0 .. n-1."""
    k = np.arange(n, dtype=np.float64)
    a = 2.0 * math.pi * k / (n - 1)
    return 0.42 - 0.5 * np.cos(a) + 0.08 * np.cos(2.0 * a)


def filter_spectra(
    f_theta_d_px: float,
    rho: float,
    wave: str,
    shape: tuple[int, int],
    quadrature: str = "matlab",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2x2 square-root filter K (K_cc, K_rr, K_cr) on the rfft half plane, each (2H, W + 1).

    Origin at index (0, 0) (fft_filter_Kw.m without its display fftshifts). The spectra are
    real parts of FFTs of real images, hence even: the other half plane mirrors this one.
    """
    h, w = _check_shape(shape)
    table = correlation_table(rho, wave, quadrature)
    return _square_root_filter(*covariance_images(table, f_theta_d_px, (h, w)))


def _square_root_filter(
    c_cc: np.ndarray, c_rr: np.ndarray, c_cr: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 3-5 of SPEC section 4 from unit-variance covariance images on the centred 2H x 2W
    lag grid (modified in place): Blackman taper, spectra, per-frequency 2x2 square root."""
    h, w = c_cc.shape[0] // 2, c_cc.shape[1] // 2
    win = np.outer(blackman(2 * h), blackman(2 * w))

    def spectrum(c: np.ndarray) -> np.ndarray:
        c *= win
        return sfft.rfft2(sfft.ifftshift(c), workers=get_num_threads()).real

    s_cc = np.maximum(spectrum(c_cc), 0.0)
    s_rr = np.maximum(spectrum(c_rr), 0.0)
    s_cr = spectrum(c_cr)
    # Explicit square root of a symmetric PSD 2x2 matrix: K = (S + s I) / t.
    s = np.sqrt(np.abs(s_cc * s_rr - s_cr * s_cr))
    t = np.sqrt(s_cc + s_rr + 2.0 * s)
    nz = t > 0
    inv_t = np.zeros_like(t)
    inv_t[nz] = 1.0 / t[nz]
    return (s_cc + s) * inv_t, (s_rr + s) * inv_t, s_cr * inv_t


def _full_plane_sum(half: np.ndarray) -> float:
    """Sum over the full 2H x 2W plane of an even spectrum given on its rfft half (W + 1 cols)."""
    return float(half[:, 0].sum() + half[:, -1].sum() + 2.0 * half[:, 1:-1].sum())


@lru_cache(maxsize=4)
def _spectral_filter_cached(
    f_theta_d_px: float, rho: float, wave: str, h: int, w: int, quadrature: str
) -> SpectralFilter:
    return _normalised_filter(*filter_spectra(f_theta_d_px, rho, wave, (h, w), quadrature))


def _normalised_filter(k_cc: np.ndarray, k_rr: np.ndarray, k_cr: np.ndarray) -> SpectralFilter:
    """The SpectralFilter of a square-root filter K (each (2H, W + 1)): unit ensemble variance
    per component for standard complex normal half-plane noise."""
    h, w = k_cc.shape[0] // 2, k_cc.shape[1] - 1
    n = 4 * h * w
    var_col = _full_plane_sum(k_cc**2 + k_cr**2) / n
    var_row = _full_plane_sum(k_rr**2 + k_cr**2) / n
    if not (var_col > 0 and var_row > 0):
        raise ValueError(f"degenerate spectral filter for shape {(h, w)} (zero variance)")
    # Standard complex normal noise X (Re, Im ~ N(0, 1)) stands in for fft2 of real white noise
    # (variance n per bin) after scaling by sqrt(n / 2); on the self-conjugate columns 0 and W
    # the inverse real FFT keeps only the Hermitian part, which halves the variance: sqrt(2).
    col_fold = np.ones(w + 1)
    col_fold[0] = col_fold[w] = math.sqrt(2.0)
    base = math.sqrt(n / 2.0) * col_fold
    scale_col = base / math.sqrt(var_col)
    scale_row = base / math.sqrt(var_row)
    filt = SpectralFilter(
        shape=(h, w),
        k_cc=(k_cc * scale_col).astype(np.float32),
        k_rr=(k_rr * scale_row).astype(np.float32),
        k_cr=np.stack([k_cr * scale_col, k_cr * scale_row]).astype(np.float32),
        variance_col=var_col,
        variance_row=var_row,
        row0=h // 2,
        col0=w // 2,
    )
    for arr in (filt.k_cc, filt.k_rr, filt.k_cr):
        arr.flags.writeable = False
    return filt


def spectral_filter(
    params: TurbulenceParams, shape: tuple[int, int], quadrature: str = "matlab"
) -> SpectralFilter:
    """The cached generator filter for ``params`` at output size ``shape`` = (H, W) [px].

    Depends on params only through (f theta_D, rho, wave): Cn2 does not rebuild it.
    """
    h, w = _check_shape(shape)
    f_theta_d, rho, wave = params.shape_key()
    return _spectral_filter_cached(f_theta_d, rho, wave, h, w, quadrature)


def _box_average(c: np.ndarray, sy: int, sx: int) -> np.ndarray:
    """Covariance images of the sy x sx area average of a field, at stored lags.

    ``c`` is on the centred native lag grid (2 H_n, 2 W_n); the mean over two boxes of sy x sx
    pixels at a native offset m has covariance sum_d T(d) C(m + d) / (sy sx)^2 with the
    triangle T(d) = (sy - |d_y|)(sx - |d_x|) (the autocorrelation of the box); sampled every
    (sy, sx) lags this is the stored grid (2H, 2W), zero lag at (H, W).
    """
    from scipy.ndimage import correlate1d

    for axis, s in ((0, sy), (1, sx)):
        if s > 1:
            tri = (s - np.abs(np.arange(-(s - 1), s, dtype=np.float64))) / float(s * s)
            c = correlate1d(c, tri, axis=axis, mode="nearest")
    return np.ascontiguousarray(c[::sy, ::sx])


@lru_cache(maxsize=4)
def _stored_filter_cached(
    f_theta_d_px: float, rho: float, wave: str, native: tuple[int, int],
    stored: tuple[int, int], quadrature: str,
) -> tuple[SpectralFilter, tuple[float, float]]:  # fmt: skip
    (nh, nw), (h, w) = native, stored
    sy, sx = nh // h, nw // w
    table = correlation_table(rho, wave, quadrature)
    c_cc, c_rr, c_cr = (
        _box_average(c, sy, sx) for c in covariance_images(table, f_theta_d_px, native)
    )
    v_cc, v_rr = float(c_cc[h, w]), float(c_rr[h, w])
    c_cc /= v_cc
    c_rr /= v_rr
    c_cr /= math.sqrt(v_cc * v_rr)
    filt = _normalised_filter(*_square_root_filter(c_cc, c_rr, c_cr))
    return filt, (math.sqrt(v_rr) / sy, math.sqrt(v_cc) / sx)


def stored_scale_filter(
    params: TurbulenceParams,
    native_shape: tuple[int, int],
    stored_shape: tuple[int, int],
    quadrature: str = "matlab",
) -> tuple[SpectralFilter, tuple[float, float]]:
    """A filter at the stored size whose fields have the law of area-averaged native fields.

    The displacement an area-resized image shows is the native field averaged over each stored
    pixel's footprint and scaled to stored pixels
    (:func:`turbsim.physics.resample.area_resize_field`). For integer ratios s = native / stored on
    both axes that field is Gaussian with the covariance of the native one averaged over two
    footprints (:func:`_box_average`), so it can be rendered directly at the stored size with the
    same recipe (taper, spectra, 2x2 square root): s^2 times fewer pixels than rendering at the
    native size and averaging. The taper is the stored grid's (the native one evaluated at the same
    relative lag is nearly the same function); a test holds variance, correlations and fold fraction
    to those of area-averaged native fields.

    Args:
        params: the path and camera (pixels of the native frame).
        native_shape: the frame's (H_n, W_n) [px].
        stored_shape: (H, W) [px], with H_n / H and W_n / W integers.

    Returns:
        (filter, (gain_row, gain_col)): unit-variance fields of the filter times
        ``sigma_r * gain`` per component are the stored displacement [stored px].

    Raises:
        ValueError: sizes that are not integer multiples.
    """
    nh, nw = _check_shape(native_shape)
    h, w = _check_shape(stored_shape)
    if nh % h or nw % w:
        raise ValueError(
            f"stored-scale rendering needs the native size ({nh}x{nw}) to be an integer "
            f"multiple of the stored size ({h}x{w})"
        )
    f_theta_d, rho, wave = params.shape_key()
    return _stored_filter_cached(f_theta_d, rho, wave, (nh, nw), (h, w), quadrature)


def draw_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Standard complex normal noise, (2, 2H, W + 1) complex64, Re and Im ~ N(0, 1).

    The streams are children of a SeedSequence drawn from ``rng`` (which advances), filled on
    threads; the values do not depend on the thread count.
    """
    h, w = _check_shape(shape)
    out = np.empty((2, 2 * h, w + 1), dtype=np.complex64)
    flat = out.reshape(-1).view(np.float32)
    entropy = rng.integers(0, 2**63, size=4, dtype=np.uint64)
    seqs = np.random.SeedSequence([int(e) for e in entropy]).spawn(_NOISE_STREAMS)
    bounds = np.linspace(0, flat.size, _NOISE_STREAMS + 1).astype(np.int64)

    def fill(i: int) -> None:
        gen = np.random.Generator(np.random.PCG64(seqs[i]))
        gen.standard_normal(out=flat[bounds[i] : bounds[i + 1]], dtype=np.float32)

    threads = get_num_threads()
    if threads > 1:
        with ThreadPoolExecutor(min(threads, _NOISE_STREAMS)) as pool:
            list(pool.map(fill, range(_NOISE_STREAMS)))
    else:
        for i in range(_NOISE_STREAMS):
            fill(i)
    return out


def render_unit_field(filt: SpectralFilter, noise: np.ndarray) -> np.ndarray:
    """Unit-ensemble-variance field from half-plane noise: float32 (2, H, W), [0] row, [1] col.

    Args:
        filt: from :func:`spectral_filter`.
        noise: (2, 2H, W + 1) complex, [0] drives the column component (Z_c), [1] the row one.
    """
    h, w = filt.shape
    if noise.shape != (2, 2 * h, w + 1):
        raise ValueError(f"noise must have shape {(2, 2 * h, w + 1)}, got {noise.shape}")
    zc, zr = noise[0], noise[1]
    spec = np.empty((2, 2 * h, w + 1), dtype=np.result_type(noise.dtype, np.complex64))
    np.multiply(filt.k_rr, zr, out=spec[0])
    spec[0] += filt.k_cr[1] * zc
    np.multiply(filt.k_cc, zc, out=spec[1])
    spec[1] += filt.k_cr[0] * zr
    # Pruned 2-D inverse real FFT: full inverse FFT along rows, keep the H central rows, then
    # the inverse real FFT along columns on those rows only.
    rows = sfft.ifft(spec, axis=1, workers=get_num_threads(), overwrite_x=True)
    rows = rows[:, filt.row0 : filt.row0 + h]
    full = sfft.irfft(rows, n=2 * w, axis=2, workers=get_num_threads())
    return np.ascontiguousarray(full[:, :, filt.col0 : filt.col0 + w], dtype=np.float32)


def sample_tilt_field(
    params: TurbulenceParams,
    shape: tuple[int, int],
    rng: np.random.Generator,
    normalize: Normalize = "ensemble",
    quadrature: str = "matlab",
) -> np.ndarray:
    """Draw one tilt field: float32 (2, H, W), [0] = row, [1] = column displacement [px].

    Convention: warping with :func:`turbsim.warp_image` samples the clean image at
    (row + F[0], col + F[1]); content moves by -F.

    Args:
        params: camera and atmosphere.
        shape: (H, W) [px], any size >= 2 x 2.
        rng: the only source of randomness; it advances.
        normalize: "ensemble" (each component has ensemble variance sigma_r^2: the physics) or
            "per-field" (each component of this field is rescaled to sample standard deviation
            sigma_r, as in the BMVC authors' scripts).
        quadrature: correlation-table discretisation ("matlab" or "fast").
    """
    if normalize not in NORMALIZE_CHOICES:
        raise ValueError(f"normalize must be one of {NORMALIZE_CHOICES}, got {normalize!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    filt = spectral_filter(params, shape, quadrature)
    field = render_unit_field(filt, draw_noise(rng, filt.shape))
    if normalize == "per-field":
        std = field.reshape(2, -1).astype(np.float64).std(axis=1, ddof=1)
        field /= std.astype(np.float32)[:, None, None]
    field *= np.float32(sigma_r_px(params))
    return field


def distort(
    image: np.ndarray,
    params: TurbulenceParams,
    rng: np.random.Generator,
    border: str = "clamp",
    normalize: Normalize = "ensemble",
    blur: str = "none",
) -> np.ndarray:
    """Warp ``image`` (H, W) or (H, W, C) with a fresh tilt field, then (optionally) blur it.

    Args:
        image: (H, W) or (H, W, C), uint8 or float.
        params: the path and camera.
        rng: the only source of randomness (the tilt field).
        border: warp border mode (:data:`turbsim.physics.choices.BORDERS`).
        normalize: field normalisation (:data:`NORMALIZE_CHOICES`).
        blur: ``"none"`` (tilt only, the Technion model) or ``"short-exposure"`` (then the mean
            short-exposure blur of the same atmosphere, :func:`turbsim.physics.blur.blur_image`).

    Returns:
        The distorted image, same shape and dtype.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    if blur not in BLUR_MODES:
        raise ValueError(f"blur must be one of {', '.join(BLUR_MODES)}; got {blur!r}")
    field = sample_tilt_field(params, image.shape[:2], rng, normalize=normalize)
    warped = warp_image(image, field, border=border)
    return warped if blur == "none" else blur_image(warped, params)
