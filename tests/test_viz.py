"""Pictures of tilt fields (turbsim/views/viz.py): field_to_rgb's shape, direction as hue and
magnitude as value, bad shapes refused."""

from __future__ import annotations

import numpy as np
import pytest

from turbsim.views.viz import field_to_rgb


# ---------------------------------------------------------------------------- turbsim.views.viz
def _constant_field(row: float, col: float, shape: tuple[int, int] = (4, 5)) -> np.ndarray:
    field = np.empty((2, *shape), dtype=np.float32)
    field[0], field[1] = row, col
    return field


def test_field_to_rgb_shape_and_zero_field_is_black() -> None:
    rgb = field_to_rgb(np.zeros((2, 6, 7), dtype=np.float32))
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 7, 3)
    assert not rgb.any()


def test_field_to_rgb_direction_is_hue_and_magnitude_is_value() -> None:
    right = field_to_rgb(_constant_field(0.0, 2.0))
    left = field_to_rgb(_constant_field(0.0, -2.0))
    down = field_to_rgb(_constant_field(2.0, 0.0))
    assert not np.array_equal(right[0, 0], left[0, 0])
    assert not np.array_equal(right[0, 0], down[0, 0])
    np.testing.assert_array_equal(right[0, 0], [255, 0, 0])  # +column: red
    np.testing.assert_array_equal(left[0, 0], [0, 255, 255])  # -column: cyan
    assert right.max() == 255  # max_px=None: the largest vector is at full brightness
    half = field_to_rgb(_constant_field(0.0, 2.0), max_px=4.0)
    np.testing.assert_array_equal(half[0, 0], [128, 0, 0])
    saturated = field_to_rgb(_constant_field(0.0, 9.0), max_px=4.0)
    np.testing.assert_array_equal(saturated[0, 0], [255, 0, 0])


def test_field_to_rgb_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        field_to_rgb(np.zeros((3, 4, 4), dtype=np.float32))
