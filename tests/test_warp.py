"""Tests of turbsim.physics.warp: the Numba kernel against naive loops, and the convention pinned
down.

Convention under test: out(r, c) = image(r + field[0, r, c], c + field[1, r, c]), bilinear, so
image content moves by -field.
"""

from __future__ import annotations

import subprocess
import sys
import zlib

import cv2
import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import warp_image_reference

from turbsim.physics.warp import BORDERS, set_num_threads, warp_image

IMAGE_DTYPES = [np.uint8, np.float32, np.float64]


def _random_image(rng: np.random.Generator, shape: tuple[int, ...], dtype) -> np.ndarray:
    if np.dtype(dtype) == np.uint8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return (rng.standard_normal(shape) * 50.0 + 100.0).astype(dtype)


def _random_field(
    rng: np.random.Generator, height: int, width: int, scale: float, dtype=np.float64
) -> np.ndarray:
    """Gaussian displacements plus a sprinkling of exact integers and half-integers (edge cases:
    samples exactly on pixel centres, on the image edge, and .5 rounding ties)."""
    field = rng.standard_normal((2, height, width)) * scale
    special = rng.random((2, height, width)) < 0.3
    field[special] = np.round(field[special] * 2.0) / 2.0
    return field.astype(dtype)


def _impulse(shape: tuple[int, ...], dtype, r0: int, c0: int, value: float) -> np.ndarray:
    image = np.zeros(shape, dtype=dtype)
    image[r0, c0] = value
    return image


# --- kernel == reference --------------------------------------------------------------------


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("dtype", IMAGE_DTYPES)
@pytest.mark.parametrize(
    "shape", [(7, 9, 3), (7, 9, 1), (7, 9), (1, 5, 3), (5, 1), (1, 1, 2), (6, 4, 5)]
)
def test_kernel_matches_reference(shape, dtype, border) -> None:
    rng = np.random.default_rng(zlib.crc32(repr((shape, np.dtype(dtype).str, border)).encode()))
    image = _random_image(rng, shape, dtype)
    for scale, field_dtype in [(0.7, np.float32), (4.0, np.float64), (60.0, np.float64)]:
        field = _random_field(rng, shape[0], shape[1], scale, field_dtype)
        got = warp_image(image, field, border)
        want = warp_image_reference(image, field, border)
        assert got.dtype == image.dtype and got.shape == image.shape
        # Same float64 operations in the same order: bit-identical, uint8 included.
        np.testing.assert_array_equal(got, want, err_msg=f"scale={scale}")


@settings(max_examples=30, deadline=None)
@given(
    height=st.integers(1, 6),
    width=st.integers(1, 6),
    channels=st.sampled_from([None, 1, 2, 3, 4]),
    dtype=st.sampled_from(IMAGE_DTYPES),
    field_dtype=st.sampled_from([np.float32, np.float64]),
    border=st.sampled_from(BORDERS),
    scale=st.sampled_from([0.3, 2.0, 25.0, 1e4]),
    seed=st.integers(0, 2**32 - 1),
)
def test_kernel_matches_reference_property(
    height, width, channels, dtype, field_dtype, border, scale, seed
) -> None:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels is None else (height, width, channels)
    image = _random_image(rng, shape, dtype)
    field = _random_field(rng, height, width, scale, field_dtype)
    np.testing.assert_array_equal(
        warp_image(image, field, border), warp_image_reference(image, field, border)
    )


# --- convention -------------------------------------------------------------------------------


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("dtype", IMAGE_DTYPES)
@pytest.mark.parametrize(
    ("shift", "expected_pos"),
    [((0.0, 3.0), (10, 7)), ((2.0, 0.0), (8, 10)), ((-1.0, -4.0), (11, 14))],
)
def test_impulse_moves_by_minus_field(shift, expected_pos, dtype, border) -> None:
    """A bright pixel at (10, 10) under a constant field lands exactly at (10, 10) - field."""
    image = _impulse((21, 23, 3), dtype, 10, 10, 200)
    field = np.empty((2, 21, 23), dtype=np.float32)
    field[0] = shift[0]
    field[1] = shift[1]
    expected = _impulse((21, 23, 3), dtype, *expected_pos, 200)
    np.testing.assert_array_equal(warp_image(image, field, border), expected)


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("dtype", IMAGE_DTYPES)
@pytest.mark.parametrize("shape", [(8, 11, 3), (8, 11), (1, 6), (6, 1, 2)])
def test_zero_field_is_identity(shape, dtype, border) -> None:
    image = _random_image(np.random.default_rng(3), shape, dtype)
    field = np.zeros((2, *shape[:2]), dtype=np.float32)
    np.testing.assert_array_equal(warp_image(image, field, border), image)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_half_pixel_shift_averages_horizontal_neighbours(dtype) -> None:
    image = _random_image(np.random.default_rng(4), (5, 8, 2), dtype)
    field = np.zeros((2, 5, 8))
    field[1] = 0.5
    out = warp_image(image, field)
    wide = image.astype(np.float64)
    np.testing.assert_allclose(out[:, :-1], (wide[:, :-1] + wide[:, 1:]) / 2.0, rtol=1e-6)
    np.testing.assert_array_equal(out[:, -1], image[:, -1])  # clamp: last column unchanged


def test_half_pixel_shift_uint8_rounds_ties_up() -> None:
    image = np.array([[0, 1, 10, 11, 20, 21, 254, 255, 100]], dtype=np.uint8)
    field = np.zeros((2, 1, 9))
    field[1] = 0.5
    out = warp_image(image, field)
    # (0+1)/2 = 0.5 -> 1, 5.5 -> 6, 10.5 -> 11, ..., 254.5 -> 255, 177.5 -> 178, last clamped.
    expected = np.array([[1, 6, 11, 16, 21, 138, 255, 178, 100]], dtype=np.uint8)
    np.testing.assert_array_equal(out, expected)


def test_uint8_rounds_to_nearest() -> None:
    """0.3 of the way from 0 to 10 is 3.0; from 0 to 5 it is 1.5 -> 2; 0.2 of 5 is 1.0 -> 1."""
    image = np.array([[0, 10], [0, 5]], dtype=np.uint8)
    field = np.zeros((2, 2, 2))
    field[1, :, 0] = 0.3
    out = warp_image(image, field)
    assert out[0, 0] == 3 and out[1, 0] == 2
    field[1, :, 0] = 0.2
    assert warp_image(image, field)[1, 0] == 1


# --- borders ----------------------------------------------------------------------------------


def test_zero_border_outside_is_zero_and_edge_is_inside() -> None:
    height, width = 6, 7
    image = np.full((height, width, 3), 7.0)
    image[:, :, 1] = 9.0
    field = np.zeros((2, height, width))
    field[1, :, 0] = -1e-9  # column 0 samples just left of the edge: outside
    field[0, height - 1, 1:] = 1e-9  # last row samples just below the edge: outside
    field[1, 2, width - 1] = 0.0  # exactly on the right edge: inside
    field[1, 3, 3] = (width - 1) - 3  # lands exactly on the right edge from the middle: inside
    field[0, 1, 4] = -1.0  # lands exactly on the top edge: inside
    field[0, 2, 2] = -3.0  # one row beyond the top: outside
    out = warp_image(image, field, "zero")
    outside = np.zeros((height, width), dtype=bool)
    outside[:, 0] = True
    outside[height - 1, 1:] = True
    outside[2, 2] = True
    np.testing.assert_array_equal(out[outside], 0.0)
    np.testing.assert_array_equal(out[~outside], image[~outside])
    # "clamp" keeps the same pixels at the edge values instead.
    np.testing.assert_array_equal(warp_image(image, field, "clamp"), image)


def test_zero_border_constant_push_outside() -> None:
    image = _random_image(np.random.default_rng(5), (5, 6, 3), np.uint8) | 1  # no zeros
    field = np.zeros((2, 5, 6))
    field[1] = 6.0
    assert not warp_image(image, field, "zero").any()
    field[1] = 2.0
    out = warp_image(image, field, "zero")
    np.testing.assert_array_equal(out[:, :4], image[:, 2:])
    assert not out[:, 4:].any()


def _mirror_index(i: int, n: int) -> int:
    """Reflect-101 by repeated mirroring, step by step (independent of the period formula)."""
    if n == 1:
        return 0
    while i < 0 or i > n - 1:
        i = -i if i < 0 else 2 * (n - 1) - i
    return i


@pytest.mark.parametrize("shape", [(7, 9, 2), (2, 5), (1, 4)])
def test_reflect_matches_explicit_mirrored_index(shape) -> None:
    rng = np.random.default_rng(6)
    height, width = shape[:2]
    image = _random_image(rng, shape, np.float64)
    field = rng.integers(-40, 41, size=(2, height, width)).astype(np.float64)
    field[:, 0, 0] = (2 * 1000 * max(height - 1, 1) + 1, -(2 * 1000 * max(width - 1, 1) + 1))
    out = warp_image(image, field, "reflect")
    for r in range(height):
        for c in range(width):
            rr = _mirror_index(r + int(field[0, r, c]), height)
            cc = _mirror_index(c + int(field[1, r, c]), width)
            np.testing.assert_array_equal(out[r, c], image[rr, cc])
    # Independent oracle for the integer shifts: numpy's "reflect" padding is reflect-101.
    pad = 41
    padded = np.pad(image, [(pad, pad), (pad, pad)] + [(0, 0)] * (image.ndim - 2), "reflect")
    r, c = np.mgrid[0:height, 0:width]
    rows = r + field[0].astype(int) + pad
    cols = c + field[1].astype(int) + pad
    ok = (rows >= 0) & (rows < padded.shape[0]) & (cols >= 0) & (cols < padded.shape[1])
    np.testing.assert_array_equal(out[ok], padded[rows[ok], cols[ok]])


def test_reflect_many_periods_away() -> None:
    """Period 2 (n - 1): a shift of 10^6 periods plus one pixel lands one pixel in."""
    image = np.arange(20.0).reshape(4, 5)
    field = np.zeros((2, 4, 5))
    field[0, 0, 0] = 2e6 * 3 + 1
    field[1, 0, 0] = -(2e6 * 4 + 1)
    field[1, 2, 4] = 2e6 * 4 + 0.5  # column 4.5 mirrors to 3.5
    out = warp_image(image, field, "reflect")
    assert out[0, 0] == image[1, 1]
    assert out[2, 4] == pytest.approx(0.5 * (image[2, 3] + image[2, 4]))


def test_reflect_fractional_coordinate() -> None:
    """Column -0.25 mirrors to +0.25: 0.75 I[0] + 0.25 I[1]; column W - 0.5 to W - 1.5."""
    image = np.array([[4.0, 8.0, 16.0, 32.0]])
    field = np.zeros((2, 1, 4))
    field[1, 0, 0] = -0.25
    field[1, 0, 3] = 0.5
    out = warp_image(image, field, "reflect")
    assert out[0, 0] == pytest.approx(0.75 * 4.0 + 0.25 * 8.0)
    assert out[0, 3] == pytest.approx(0.5 * 16.0 + 0.5 * 32.0)


# --- against OpenCV ---------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_clamp_matches_cv2_remap_replicate(channels) -> None:
    """cv2.remap quantises sample positions to 1/32 px, so each of the two coordinates is off by
    up to 1/64 px: the interpolated value may differ by up to (local 2x2 range) / 32."""
    rng = np.random.default_rng(7)
    height, width = 23, 31
    image = rng.random((height, width, channels)).astype(np.float32)
    field = (rng.standard_normal((2, height, width)) * 6.0).astype(np.float32)
    ours = warp_image(image, field, "clamp")
    r, c = np.mgrid[0:height, 0:width].astype(np.float32)
    theirs = cv2.remap(
        image, c + field[1], r + field[0], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    ).reshape(image.shape)
    y = np.clip(r.astype(np.float64) + field[0], 0, height - 1)
    x = np.clip(c.astype(np.float64) + field[1], 0, width - 1)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, height - 1), np.minimum(x0 + 1, width - 1)
    corners = np.stack([image[y0, x0], image[y0, x1], image[y1, x0], image[y1, x1]])
    local_range = corners.max(axis=0) - corners.min(axis=0)
    np.testing.assert_array_less(np.abs(ours - theirs), local_range / 32.0 + 1e-5)


# --- API details ------------------------------------------------------------------------------


def test_grey_equals_single_channel_and_noncontiguous_inputs() -> None:
    rng = np.random.default_rng(8)
    image = _random_image(rng, (9, 12), np.uint8)
    field = _random_field(rng, 9, 12, 3.0)
    grey = warp_image(image, field)
    assert grey.shape == (9, 12)
    np.testing.assert_array_equal(warp_image(image[:, :, None], field)[:, :, 0], grey)
    # A transposed (Fortran-ordered) image and a strided field give the same result.
    image_t = np.ascontiguousarray(image.T).T
    field_strided = np.zeros((2, 9, 24))[:, :, ::2]
    field_strided[...] = field
    assert not field_strided.flags.c_contiguous and not image_t.flags.c_contiguous
    np.testing.assert_array_equal(warp_image(image_t, field_strided), grey)


def test_integer_field_is_converted() -> None:
    image = _random_image(np.random.default_rng(9), (5, 6, 3), np.float32)
    field = np.random.default_rng(10).integers(-3, 4, size=(2, 5, 6))
    np.testing.assert_array_equal(
        warp_image(image, field), warp_image(image, field.astype(np.float64))
    )


def test_output_independent_of_thread_count() -> None:
    rng = np.random.default_rng(11)
    image = _random_image(rng, (64, 40, 3), np.uint8)
    field = _random_field(rng, 64, 40, 5.0, np.float32)
    before = numba.get_num_threads()
    try:
        set_num_threads(1)
        one = warp_image(image, field, "reflect")
        set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = warp_image(image, field, "reflect")
    finally:
        set_num_threads(before)
    np.testing.assert_array_equal(one, many)


def test_warm_up_compiles_the_asked_kernels() -> None:
    """In a fresh process the kernel has no compiled signature; warm_up adds exactly the
    (image, field) dtype pairs it is given, so a worker's first warp compiles nothing."""
    code = (
        "import numpy as np; from turbsim import warp; k = warp._warp_bilinear\n"
        "before = len(k.signatures)\n"
        "warp.warm_up((np.dtype(np.float32),), (np.dtype(np.float64),))\n"
        "print(before, [(str(s[0].dtype), str(s[1].dtype)) for s in k.signatures])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split(" ", 1)[0] == "0"
    assert done.stdout.split(" ", 1)[1].strip() == "[('float32', 'float64')]"


def test_empty_image() -> None:
    out = warp_image(np.zeros((0, 4, 3), np.uint8), np.zeros((2, 0, 4)))
    assert out.shape == (0, 4, 3) and out.dtype == np.uint8


# --- bad inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "field", "border", "error", "match"),
    [
        (np.zeros((4, 5)), np.zeros((2, 5, 4)), "clamp", ValueError, r"\(2, 5, 4\).*\(4, 5\)"),
        (np.zeros((4, 5, 3)), np.zeros((2, 4, 6)), "clamp", ValueError, "does not match"),
        (np.zeros((4, 5)), np.zeros((3, 4, 5)), "clamp", ValueError, r"\(3, 4, 5\)"),
        (np.zeros((4, 5)), np.zeros((4, 5)), "clamp", ValueError, "field shape"),
        (np.zeros((4, 5)), np.zeros((2, 4, 5)), "wrap", ValueError, "'clamp'.*'wrap'"),
        (np.zeros((4, 5)), np.zeros((2, 4, 5)), "Clamp", ValueError, "border must be one of"),
        (np.zeros((2, 4, 5, 3)), np.zeros((2, 2, 4)), "clamp", ValueError, "4-D"),
        (np.zeros(5), np.zeros((2, 5)), "clamp", ValueError, "1-D"),
        (np.zeros((4, 5), np.int32), np.zeros((2, 4, 5)), "clamp", TypeError, "int32"),
        (np.zeros((4, 5), bool), np.zeros((2, 4, 5)), "clamp", TypeError, "bool"),
        (np.zeros((4, 5)), np.zeros((2, 4, 5), complex), "clamp", TypeError, "complex"),
    ],
)
def test_bad_inputs_raise(image, field, border, error, match) -> None:
    with pytest.raises(error, match=match):
        warp_image(image, field, border)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("field_dtype", [np.float32, np.float64])
def test_non_finite_field_raises(bad_value, border, field_dtype) -> None:
    field = np.zeros((2, 6, 5), dtype=field_dtype)
    field[1, 4, 2] = bad_value
    with pytest.raises(ValueError, match="non-finite.*row is 4"):
        warp_image(np.zeros((6, 5, 3), np.uint8), field, border)
