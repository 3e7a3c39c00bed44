"""turbsim.views.preview: the sheet's legends (colour wheel in the field panel, class key)."""

from __future__ import annotations

import numpy as np

from turbsim.sources.cityscapes import TRAIN_ID_PALETTE
from turbsim.views.preview import _TITLE_H, class_key, paste_wheel, sample_sheet
from turbsim.views.viz import colour_wheel, field_to_rgb


def _colours(image: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(int(v) for v in c) for c in image.reshape(-1, 3)}


def test_class_key_shows_exactly_the_classes_present() -> None:
    label = np.zeros((32, 64), np.uint8)
    label[:, 40:] = 13  # road and car
    colours = _colours(class_key(label, 400))
    palette = {tuple(int(v) for v in c) for c in TRAIN_ID_PALETTE}
    assert palette & colours == {tuple(int(v) for v in TRAIN_ID_PALETTE[k]) for k in (0, 13)}
    assert np.all(class_key(label, 400)[0] == 255)


def test_class_key_wraps_to_the_width() -> None:
    label = np.arange(19, dtype=np.uint8).repeat(4).reshape(4, 19)
    narrow, wide = class_key(label, 200), class_key(label, 2000)
    assert narrow.shape[1] == 200 and wide.shape[1] == 2000
    assert narrow.shape[0] > wide.shape[0]


def test_field_panel_carries_the_colour_wheel_legend() -> None:
    rng = np.random.default_rng(0)
    field = rng.normal(size=(2, 100, 200)).astype(np.float32)
    panel = field_to_rgb(field)
    pasted = paste_wheel(panel)
    size = 100 // 5
    assert not np.array_equal(pasted[2 : 2 + size, 2 : 2 + size], panel[2 : 2 + size, 2 : 2 + size])
    np.testing.assert_array_equal(pasted[:, 2 + size :], panel[:, 2 + size :])
    wheel = colour_wheel(size)
    opaque = wheel[..., 3] == 255
    corner = pasted[2 : 2 + size, 2 : 2 + size]
    np.testing.assert_array_equal(corner[opaque], wheel[..., :3][opaque])


def test_sample_sheet_panels_and_key() -> None:
    h, w = 64, 128
    label = np.full((h, w), 2, np.uint8)
    item = {
        "clean": np.full((h, w, 3), 50, np.uint8),
        "distorted": np.full((h, w, 3), 70, np.uint8),
        "label": label,
    }
    sheet = sample_sheet(item, np.zeros((2, h, w), np.float32), "val/x")
    assert sheet.shape[1] == 4 * w + 3 * 4 and sheet.shape[0] > _TITLE_H + h
    np.testing.assert_array_equal(sheet[_TITLE_H : _TITLE_H + h, w + 4 : 2 * w + 4], 70)
    key = sheet[_TITLE_H + h :]
    assert tuple(int(v) for v in TRAIN_ID_PALETTE[2]) in _colours(key)
