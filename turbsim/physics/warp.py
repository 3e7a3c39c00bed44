"""Bilinear image warping by a per-pixel displacement field (the only Numba module of turbsim).

The public wrapper :func:`warp_image` validates shapes and dtypes, makes the arrays C-contiguous,
allocates the output and calls the private kernel :func:`_warp_bilinear`, which runs in parallel
over image rows. Every output pixel is computed independently (no reductions), so the result does
not depend on the number of threads. ``tests/reference.py`` holds a naive pure-Python version of
the same arithmetic that the kernel is compared with.

Reference: Schwartzman, Alterman, Zamir & Schechner, "Turbulence-induced 2D correlated image
distortion", ICCP 2017 (the Matlab simulator warps the clean frame with ``interp2(..., 'linear')``,
which returns 0 outside the image: the ``"zero"`` border here).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from turbsim.physics.choices import BORDERS

__all__ = ["BORDERS", "set_num_threads", "warm_up", "warp_image"]

# BORDERS (the valid values of the ``border`` argument of :func:`warp_image`) lives in
# turbsim.shards.schema with the other choice lists.

_CLAMP, _REFLECT, _ZERO = 0, 1, 2
_BORDER_CODES = {"clamp": _CLAMP, "reflect": _REFLECT, "zero": _ZERO}

_IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float64))
_FIELD_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@njit(cache=True)
def _reflect101(x: float, xmax: float) -> float:
    """Mirror coordinate ``x`` into ``[0, xmax]`` about the edge pixel centres (reflect-101).

    ``-1 -> 1``, ``xmax + 1 -> xmax - 1``; the pattern has period ``2 xmax`` so coordinates many
    periods away are handled exactly (``%`` of non-negative floats is exact). ``xmax == 0`` (a
    single row or column) maps everything to 0.
    """
    if xmax <= 0.0:
        return 0.0
    period = 2.0 * xmax
    x = abs(x) % period
    if x > xmax:
        x = period - x
    return x


@njit(parallel=True, cache=True)
def _warp_bilinear(image, field, border, round_uint8, out, bad_rows):
    """Bilinear warp kernel: ``out[r, c, k] = image(r + field[0, r, c], c + field[1, r, c], k)``.

    Parallel over rows (``prange``). Each row is done in two passes over row-sized scratch
    arrays: pass 1 (no image reads, vectorisable for clamp/zero) turns the field into sample
    coordinates, flat offsets of the four neighbours and the two weights; pass 2 gathers and
    interpolates with the channel loop innermost. Every output pixel is computed independently
    (no reductions), so the result does not depend on the thread count.

    Args:
        image: (H, W, C) C-contiguous, uint8/float32/float64.
        field: (2, H, W) C-contiguous float32/float64 displacement [px]; [0] row, [1] column.
        border: ``_CLAMP``, ``_REFLECT`` (reflect-101) or ``_ZERO`` (outside points give 0).
        round_uint8: round to nearest (``floor(v + 0.5)``) and clip to [0, 255] before storing.
        out: (H, W, C) output, same dtype as ``image``; overwritten, except that rows flagged
            in ``bad_rows`` are left undefined.
        bad_rows: (H,) bool, set per row: True if the row has a non-finite sample coordinate.
    """
    h, w, nch = image.shape
    hmax = h - 1.0
    wmax = w - 1.0
    row_step = w * nch
    src = image.reshape(-1)
    dst = out.reshape(-1)
    for r in prange(h):
        wy = np.empty(w, np.float64)
        wx = np.empty(w, np.float64)
        inside = np.ones(w, np.bool_)
        off00 = np.empty(w, np.uintp)
        off01 = np.empty(w, np.uintp)
        off10 = np.empty(w, np.uintp)
        off11 = np.empty(w, np.uintp)

        # Pass 1: sample coordinates, computed in float64 whatever the field dtype. One loop
        # per border mode keeps the clamp and zero loops branch-free.
        bad = False
        if border == _CLAMP:
            for c in range(w):
                y = r + np.float64(field[0, r, c])
                x = c + np.float64(field[1, r, c])
                bad |= not (math.isfinite(y) and math.isfinite(x))
                wy[c] = min(max(y, 0.0), hmax)
                wx[c] = min(max(x, 0.0), wmax)
        elif border == _ZERO:
            for c in range(w):
                y = r + np.float64(field[0, r, c])
                x = c + np.float64(field[1, r, c])
                bad |= not (math.isfinite(y) and math.isfinite(x))
                # Exactly on the edge is inside. Outside points are clamped only to keep
                # their (unused) offsets in range.
                inside[c] = (y >= 0.0) & (y <= hmax) & (x >= 0.0) & (x <= wmax)
                wy[c] = min(max(y, 0.0), hmax)
                wx[c] = min(max(x, 0.0), wmax)
        else:
            for c in range(w):
                y = r + np.float64(field[0, r, c])
                x = c + np.float64(field[1, r, c])
                finite = math.isfinite(y) and math.isfinite(x)
                bad |= not finite
                if finite and not 0.0 <= y <= hmax:
                    y = _reflect101(y, hmax)
                if finite and not 0.0 <= x <= wmax:
                    x = _reflect101(x, wmax)
                wy[c] = y
                wx[c] = x
        bad_rows[r] = bad
        if bad:
            continue  # NaN/inf coordinates would give garbage offsets: never use them

        # Pass 1b: neighbour offsets and weights. y, x >= 0 here, so truncation is floor. On
        # the last row/column the "next" neighbour is the pixel itself with weight 0, so
        # H == 1 or W == 1 never reads out of range. Unsigned offsets skip negative-index
        # handling in the gathers.
        for c in range(w):
            y = wy[c]
            x = wx[c]
            y0 = int(y)
            x0 = int(x)
            dy = row_step if y0 < h - 1 else 0
            dx = nch if x0 < w - 1 else 0
            o00 = np.uintp(y0 * row_step + x0 * nch)
            off00[c] = o00
            off01[c] = o00 + np.uintp(dx)
            off10[c] = o00 + np.uintp(dy)
            off11[c] = o00 + np.uintp(dy + dx)
            wy[c] = y - y0
            wx[c] = x - x0

        # Pass 2: gather and interpolate, channels innermost.
        for c in range(w):
            o = np.uintp(r * row_step + c * nch)
            if not inside[c]:
                for k in range(nch):
                    dst[o + np.uintp(k)] = 0
                continue
            o00 = off00[c]
            o01 = off01[c]
            o10 = off10[c]
            o11 = off11[c]
            b = wy[c]
            a = wx[c]
            for k in range(nch):
                kk = np.uintp(k)
                top = (1.0 - a) * np.float64(src[o00 + kk]) + a * np.float64(src[o01 + kk])
                bot = (1.0 - a) * np.float64(src[o10 + kk]) + a * np.float64(src[o11 + kk])
                v = (1.0 - b) * top + b * bot
                if round_uint8:
                    # floor(v + 0.5) clipped to [0, 255]: v + 0.5 > 0 and the float -> uint8
                    # store truncates.
                    dst[o + kk] = min(max(v + 0.5, 0.0), 255.0)
                else:
                    dst[o + kk] = v


def warp_image(image: np.ndarray, field: np.ndarray, border: str = "clamp") -> np.ndarray:
    """Warp an image by a per-pixel displacement field with bilinear interpolation.

    Convention:
        ``out(r, c) = image(r + field[0, r, c], c + field[1, r, c])`` with ``r`` the row and
        ``c`` the column index, both in pixels, pixel centres at integer coordinates. The field
        says where each output pixel samples from, so image content moves by ``-field``: a
        constant field ``(0, +3)`` moves an impulse 3 px LEFT (column 10 -> column 7), and
        ``(+2, 0)`` moves it 2 px up. This is ``distorted(r, c) = clean(r + F_row, c + F_col)`` of
        SPEC section 5 and the ``interp2`` call of the Matlab simulator.

    Arithmetic: sample coordinates and the interpolation are computed in float64 for every
    image and field dtype (a float32 field is widened first). uint8 results are rounded to
    nearest with ties up (``floor(v + 0.5)``) and clipped to [0, 255]; float32 results are the
    float64 value rounded to float32; float64 results are not rounded.

    Args:
        image: (H, W) or (H, W, C) image, any C >= 1, dtype uint8, float32 or float64 (other
            dtypes are refused with TypeError: convert them first). Values are in the image's
            own units (e.g. [0, 255] for uint8).
        field: (2, H, W) displacement [px]; ``field[0]`` row (down positive) and ``field[1]``
            column (right positive) displacement. float32 or float64; integer and float16
            fields are converted to float64. All values must be finite.
        border: How sample points outside the pixel-centre rectangle ``[0, H-1] x [0, W-1]`` are
            handled:

            - ``"clamp"`` (default): clamp the coordinates to the rectangle (edge pixels extend
              outward; ``grid_sample(padding_mode="border", align_corners=True)``,
              ``cv2.BORDER_REPLICATE``).
            - ``"reflect"``: mirror the coordinates about the edge pixel centres (reflect-101:
              ``-1 -> 1``, ``H -> H-2``), periodic with period ``2 (H-1)``.
            - ``"zero"``: the output pixel is 0 in all channels if its sample point lies outside
              the rectangle (a point exactly on the edge is inside), like Matlab ``interp2``
              with extrapolation value 0.

    Returns:
        Warped image with the same shape and dtype as ``image`` (a new C-contiguous array).

    Raises:
        TypeError: ``image`` or ``field`` has an unsupported dtype.
        ValueError: bad ``image`` ndim, ``field`` shape not ``(2, H, W)`` of the image, a
            non-finite field value, or an unknown ``border``.
    """
    image = np.asarray(image)
    field = np.asarray(field)
    if image.ndim not in (2, 3):
        raise ValueError(
            f"image must be (H, W) or (H, W, C), got {image.ndim}-D array of shape {image.shape}"
        )
    if image.dtype not in _IMAGE_DTYPES:
        raise TypeError(
            f"image dtype must be uint8, float32 or float64, got {image.dtype}; convert it first"
        )
    if field.dtype.kind in "iu" or field.dtype == np.float16:
        field = field.astype(np.float64)
    if field.dtype not in _FIELD_DTYPES:
        raise TypeError(f"field dtype must be float32 or float64, got {field.dtype}")
    height, width = image.shape[:2]
    if field.shape != (2, height, width):
        raise ValueError(
            f"field shape {field.shape} does not match image shape {image.shape}: "
            f"expected (2, {height}, {width}) with [0] row and [1] column displacement"
        )
    if border not in _BORDER_CODES:
        raise ValueError(f"border must be one of {', '.join(map(repr, BORDERS))}; got {border!r}")

    image3 = np.ascontiguousarray(image if image.ndim == 3 else image[:, :, np.newaxis])
    field = np.ascontiguousarray(field)
    out = np.empty(image3.shape, dtype=image3.dtype)
    bad_rows = np.zeros(height, dtype=np.bool_)
    _warp_bilinear(image3, field, _BORDER_CODES[border], image3.dtype == np.uint8, out, bad_rows)
    if bad_rows.any():
        first = int(np.flatnonzero(bad_rows)[0])
        raise ValueError(
            f"field contains non-finite values (NaN or inf); first affected row is {first}"
        )
    return out.reshape(image.shape)


def warm_up(image_dtypes: tuple = _IMAGE_DTYPES, field_dtypes: tuple = _FIELD_DTYPES) -> None:
    """Compile (or load from the on-disk cache) the kernels for the given dtypes.

    By default uint8, float32 and float64 images with float32 and float64 fields, on a tiny
    image, so a worker process pays the compilation cost once, up front (each pair costs ~2 s
    the first time on a machine, ~0.03 s from the cache).
    """
    for image_dtype in image_dtypes:
        image = np.zeros((2, 3, 1), dtype=image_dtype)
        for field_dtype in field_dtypes:
            field = np.zeros((2, 2, 3), dtype=field_dtype)
            warp_image(image, field)


def set_num_threads(n: int) -> None:
    """Set the number of threads the Numba kernels use (``numba.set_num_threads``).

    Args:
        n: Number of threads, 1 <= n <= ``numba.config.NUMBA_NUM_THREADS``.
    """
    numba.set_num_threads(n)
