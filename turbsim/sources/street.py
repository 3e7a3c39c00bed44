"""Procedural street scenes: :func:`make_scene` and its painters (turbsim.sources.synthetic writes
them).

:func:`make_scene` draws one street seen from a car: sky on top, building facades with windows
and rows of trees converging to a vanishing point, sidewalks and a road with lane markings at the
bottom, optional grass verges and fences, and poles carrying traffic signs or lights, cars and
pedestrians scaled by their depth. Colours are roughly those of real streets (not the label
palette), textured with noise and with sharp edges, so that turbulence warping is visible and a
network has to learn the classes from shape, texture and context. Every pixel gets one of the
labelIds in :data:`SCENE_LABEL_IDS`, all of which map to a trainId.

Geometry convention: rows grow downwards. The horizon is row ``y_h`` and the vanishing point
column ``x_v``; ground points are described by ``t = (y - y_h) / (H - y_h)`` (1 at the bottom
row, 0 at the horizon: inverse depth) and by the bottom-row-equivalent lateral offset
``d = (x - x_v) / t`` [px]. World heights are in units of the camera height: an object of height
``h`` standing at ``t`` is ``h * t * (H - y_h)`` pixels tall.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np

#: labelIds drawn by :func:`make_scene` (cityscapesScripts helpers/labels.py).
SCENE_LABEL_IDS: dict[str, int] = {
    "road": 7,
    "sidewalk": 8,
    "building": 11,
    "fence": 13,
    "pole": 17,
    "traffic light": 19,
    "traffic sign": 20,
    "vegetation": 21,
    "terrain": 22,
    "sky": 23,
    "person": 24,
    "car": 26,
}
_ID = SCENE_LABEL_IDS

#: Smallest height or width accepted [px].
MIN_SIZE = 16


class _Canvas:
    """The image being painted (float32 RGB, 0..255) and its labelIds, painter's algorithm."""

    def __init__(self, height: int, width: int, fine: np.ndarray) -> None:
        self.height, self.width = height, width
        self.rgb = np.zeros((height, width, 3), np.float32)
        self.label = np.zeros((height, width), np.uint8)
        self.fine = fine  # (H, W) standard normal pixel noise, shared by all textures

    def box(self, y0: float, y1: float, x0: float, x1: float) -> tuple[slice, slice] | None:
        """Integer slices of the rectangle [y0, y1) x [x0, x1) clipped to the image (>= 1 px)."""
        r0, c0 = round(y0), round(x0)
        r1, c1 = max(round(y1), r0 + 1), max(round(x1), c0 + 1)
        r0, r1 = max(r0, 0), min(r1, self.height)
        c0, c1 = max(c0, 0), min(c1, self.width)
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def paint(
        self,
        where: tuple[slice, slice] | None,
        label: int,
        color: Sequence[float] | np.ndarray,
        texture: float = 6.0,
        mask: np.ndarray | None = None,
    ) -> None:
        """Paint ``color`` (RGB, or (h, w, 3)) plus ``texture`` x pixel noise, label ``label``."""
        if where is None:
            return
        rows, cols = where
        shade = np.asarray(color, np.float32) + texture * self.fine[rows, cols, None]
        if mask is None:
            self.rgb[rows, cols] = shade
            self.label[rows, cols] = label
        else:
            self.rgb[rows, cols][mask] = np.broadcast_to(shade, (*mask.shape, 3))[mask]
            self.label[rows, cols][mask] = label

    def rect(self, y0, y1, x0, x1, label: int, color, texture: float = 6.0) -> None:
        self.paint(self.box(y0, y1, x0, x1), label, color, texture)

    def ellipse(self, cy, cx, ry, rx, label: int, color, texture: float = 6.0) -> None:
        """Filled ellipse centred at (cy, cx) with radii (ry, rx) [px] (at least one pixel)."""
        ry, rx = max(ry, 0.5), max(rx, 0.5)
        where = self.box(cy - ry, cy + ry, cx - rx, cx + rx)
        if where is None:
            return
        rows, cols = where
        yy = (np.arange(rows.start, rows.stop) + 0.5 - cy)[:, None] / ry
        xx = (np.arange(cols.start, cols.stop) + 0.5 - cx)[None, :] / rx
        mask = yy**2 + xx**2 <= 1.0
        if not mask.any():  # tiny ellipse between pixel centres: keep the nearest pixel
            mask[np.unravel_index(np.argmin(yy**2 + xx**2), mask.shape)] = True
        self.paint(where, label, color, texture, mask)


@dataclass
class _Street:
    """Geometry and shared noise of one scene (see the module docstring for t and d)."""

    canvas: _Canvas
    rng: np.random.Generator
    y_h: float  # horizon row
    x_v: float  # vanishing-point column
    medium: np.ndarray  # (H, W) value noise, ~W/160 px cells
    coarse: np.ndarray  # (H, W) value noise, ~W/12 px cells
    road: tuple[float, float]  # (left, right) road half-widths at the bottom row [px]
    walk: tuple[float, float]  # sidewalk widths at the bottom row [px]
    verge: tuple[float, float]  # terrain widths between sidewalk and facades (0: none) [px]

    @property
    def ground(self) -> float:
        """Rows from the horizon to the bottom of the image."""
        return self.canvas.height - self.y_h

    @property
    def horizon_row(self) -> int:
        """First row whose centre lies below the horizon."""
        return min(self.canvas.height, max(0, int(np.floor(self.y_h + 0.5))))

    def walk_out(self, side: int) -> float:
        return self.road[side] + self.walk[side]

    def facade_base(self, side: int) -> float:
        return self.walk_out(side) + self.verge[side]

    def foot(self, side: int, t: float, offset: float) -> tuple[float, float, float]:
        """(row, column, px per camera height) of a ground point at inverse depth t, ``offset``
        px (bottom-equivalent) to the left (side 0) or right (side 1) of the vanishing point."""
        scale = t * self.ground
        return self.y_h + scale, self.x_v + (-1 if side == 0 else 1) * offset * t, scale

    def column_depth(self, side: int, base: float) -> tuple[slice, np.ndarray]:
        """Columns of one side and the inverse depth t (> 0) of the line d = +-base there."""
        w = self.canvas.width
        split = min(w, max(0, int(np.floor(self.x_v + 0.5))))
        columns = slice(0, split) if side == 0 else slice(split, w)
        x = np.arange(columns.start, columns.stop, dtype=np.float32) + 0.5
        t = np.maximum((self.x_v - x if side == 0 else x - self.x_v) / base, 1e-6)
        return columns, t


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Value noise: normals on a grid of ``cell`` px, bicubic-upsampled; float32 (H, W), std ~1."""
    rows = max(2, int(np.ceil(height / cell)) + 1)
    cols = max(2, int(np.ceil(width / cell)) + 1)
    coarse = rng.standard_normal((rows, cols), dtype=np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def _jitter(rng: np.random.Generator, color: Sequence[float], amount: float) -> np.ndarray:
    """A colour varied by a common brightness change and a small per-channel tint."""
    base = np.asarray(color, np.float32)
    return base * rng.uniform(1 - amount, 1 + amount) + rng.normal(0, 6, 3).astype(np.float32)


_FACADE_COLORS = (
    (185, 170, 145),  # sandstone
    (125, 125, 128),  # concrete
    (150, 92, 72),  # brick
    (205, 200, 190),  # plaster
    (160, 150, 120),  # ochre
    (95, 100, 110),  # dark render
)
_CAR_COLORS = (
    (200, 200, 205),
    (30, 30, 35),
    (140, 140, 145),
    (150, 30, 30),
    (40, 60, 120),
    (225, 225, 220),
    (70, 80, 60),
)
_CLOTHES = (
    (40, 40, 50),
    (90, 30, 30),
    (30, 50, 90),
    (150, 140, 120),
    (60, 70, 50),
    (200, 200, 190),
)
_SKIN = ((225, 185, 160), (190, 140, 105), (120, 85, 60))


def check_size(height: int, width: int) -> None:
    """Raise ValueError unless height and width [px] are integers >= :data:`MIN_SIZE`."""
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if value < MIN_SIZE:
            raise ValueError(f"{name} must be >= {MIN_SIZE} px, got {value}")


def make_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one procedural street scene and its labels.

    Args:
        rng: the only source of randomness; the same generator state gives the same scene.
        height: image height [px], >= 16.
        width: image width [px], >= 16.

    Returns:
        (rgb, label_ids): uint8 (H, W, 3) RGB image and uint8 (H, W) Cityscapes labelIds, each
        one of :data:`SCENE_LABEL_IDS`.

    Raises:
        ValueError: when height or width is not an integer >= 16.
    """
    check_size(height, width)
    h, w = int(height), int(width)
    # Two streams: the layout draws the same numbers at every image size (so a small preview
    # shows the same street as the full-size image); the pixel noise depends on the size.
    layout = np.random.default_rng(rng.integers(2**63))
    noise = np.random.default_rng(rng.integers(2**63))
    canvas = _Canvas(h, w, noise.standard_normal((h, w), dtype=np.float32))
    street = _Street(
        canvas=canvas,
        rng=layout,
        y_h=h * layout.uniform(0.36, 0.48),
        x_v=w * layout.uniform(0.4, 0.6),
        medium=_smooth_noise(noise, h, w, max(2.0, w / 160)),
        coarse=_smooth_noise(noise, h, w, max(4.0, w / 12)),
        road=(w * layout.uniform(0.3, 0.55), w * layout.uniform(0.3, 0.55)),
        walk=(w * layout.uniform(0.12, 0.3), w * layout.uniform(0.12, 0.3)),
        verge=(
            w * layout.uniform(0.08, 0.25) if layout.random() < 0.45 else 0.0,
            w * layout.uniform(0.08, 0.25) if layout.random() < 0.45 else 0.0,
        ),
    )
    _paint_sky(street)
    _paint_ground(street)
    for side in (0, 1):
        _paint_side(street, side)

    # Objects at inverse depth t, painted far to near; the first pole carries a sign, the
    # second a light, the first car and person are near enough to be seen at any image size.
    objects: list[tuple[float, Callable[[], None]]] = []
    if layout.random() < 0.5:
        objects.append((0.0, partial(_paint_fence, street, int(layout.integers(2)))))
    for _ in range(int(layout.integers(1, 4))):
        t = layout.uniform(0.2, 0.9)
        objects.append((t, partial(_paint_tree, street, int(layout.integers(2)), t)))
    kinds = [
        "sign",
        "light",
        *layout.choice(["plain", "sign", "light"], int(layout.integers(0, 4))),
    ]
    for i, kind in enumerate(kinds):
        t = layout.uniform(0.4, 0.9) if i < 2 else layout.uniform(0.2, 0.95)
        objects.append((t, partial(_paint_pole, street, int(layout.integers(2)), t, str(kind))))
    for i in range(int(layout.integers(1, 5))):
        t = layout.uniform(0.45, 0.85) if i == 0 else layout.uniform(0.12, 0.95)
        objects.append((t, partial(_paint_car, street, t)))
    for i in range(int(layout.integers(1, 5))):
        t = layout.uniform(0.4, 0.85) if i == 0 else layout.uniform(0.15, 0.95)
        objects.append((t, partial(_paint_person, street, int(layout.integers(2)), t)))
    for _, paint in sorted(objects, key=lambda item: item[0]):
        paint()

    # Camera: uneven lighting, white balance, slight optical blur, sensor noise.
    rgb = canvas.rgb
    rgb *= (1.0 + 0.06 * street.coarse)[..., None]
    rgb *= layout.uniform(0.85, 1.1) * layout.uniform(0.94, 1.06, 3).astype(np.float32)
    rgb = cv2.GaussianBlur(rgb, (3, 3), 0.6)
    rgb += 2.5 * noise.standard_normal((h, w, 3), dtype=np.float32)
    rgb += 0.5
    np.clip(rgb, 0, 255, out=rgb)
    return rgb.astype(np.uint8), canvas.label


def _paint_sky(street: _Street) -> None:
    """Rows above the horizon: a vertical gradient, brighter towards the horizon, soft clouds."""
    canvas, rng = street.canvas, street.rng
    overcast = rng.random() < 0.35
    top = np.array((175, 180, 188) if overcast else (95, 140, 205), np.float32)
    bottom = np.array((210, 212, 215) if overcast else (195, 212, 232), np.float32)
    rows = slice(0, street.horizon_row)
    fraction = (np.arange(rows.stop, dtype=np.float32) / canvas.height)[:, None, None]
    clouds = np.clip(street.coarse[rows] + 0.4 * street.medium[rows] - 0.3, 0, None)
    canvas.rgb[rows] = top + (bottom - top) * fraction + 28.0 * clouds[..., None]
    canvas.rgb[rows] += 1.5 * canvas.fine[rows, :, None]
    canvas.label[rows] = _ID["sky"]


def _paint_ground(street: _Street) -> None:
    """Rows below the horizon: road, sidewalks, verges, and bushes beyond (hidden by facades)."""
    canvas, rng = street.canvas, street.rng
    rows = slice(street.horizon_row, canvas.height)
    y = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None] + 0.5
    x = np.arange(canvas.width, dtype=np.float32)[None, :] + 0.5
    t = np.maximum((y - street.y_h) / street.ground, 1e-6)  # (rows, 1)
    d = (x - street.x_v) / t  # (rows, W) bottom-equivalent lateral offset [px]
    zone = np.zeros(d.shape, np.uint8)  # 0 bushes, 1 terrain, 2 sidewalk, 3 road
    zone[(-d < street.facade_base(0)) & (d < street.facade_base(1))] = 1
    zone[(-d < street.walk_out(0)) & (d < street.walk_out(1))] = 2
    zone[(-d < street.road[0]) & (d < street.road[1])] = 3
    labels = np.array([_ID["vegetation"], _ID["terrain"], _ID["sidewalk"], _ID["road"]], np.uint8)
    canvas.label[rows] = labels[zone]

    grass = (115, 135, 70) if rng.random() < 0.7 else (140, 122, 95)
    paving = _jitter(rng, (150, 145, 140) if rng.random() < 0.7 else (160, 120, 110), 0.1)
    asphalt = _jitter(rng, (95, 95, 100), 0.15)
    fine, medium, coarse = canvas.fine[rows], street.medium[rows], street.coarse[rows]
    depth = np.broadcast_to(1.0 / t, d.shape)  # distance / distance at the bottom row
    mark = canvas.width * 0.008  # lane-marking width at the bottom row [px]
    centre = 0.5 * (street.road[1] - street.road[0])
    for index, (color, texture) in enumerate(
        (((70, 95, 55), 14.0), (grass, 10.0), (paving, 5.0), (asphalt, 5.0))
    ):
        where = zone == index
        if not where.any():
            continue
        shade = (
            np.asarray(color, np.float32) + (texture * fine[where] + 8.0 * medium[where])[:, None]
        )
        if index == 2:  # paving joints across and along the walk
            joints = (np.mod(depth[where] * 3.0, 1.0) < 0.08) | (np.mod(d[where] / 40, 1.0) < 0.05)
            shade -= 25.0 * joints[:, None]
        elif index == 3:  # patches, dashed centre line, solid edge lines
            shade += 7.0 * coarse[where][:, None]
            dz = d[where]
            dashes = (np.abs(dz - centre) < mark) & (np.mod(depth[where] * 0.8, 1.0) < 0.45)
            edges = (-dz > street.road[0] - 2.5 * mark) | (dz > street.road[1] - 2.5 * mark)
            lines = dashes | edges
            shade[lines] = 215.0 + 4.0 * fine[where][lines][:, None]
        canvas.rgb[rows][where] = shade


def _paint_side(street: _Street, side: int) -> None:
    """Facades with windows, or rows of trees, standing on the line d = -+facade_base."""
    canvas, rng = street.canvas, street.rng
    base = street.facade_base(side)
    columns, t_col = street.column_depth(side, base)
    # Segment boundaries along the street (geometric in inverse depth), one building each.
    bounds = [0.02]
    while bounds[-1] < 2.5 * canvas.width / base:
        bounds.append(bounds[-1] * rng.uniform(1.25, 1.7))
    count = len(bounds) + 1
    segment = np.searchsorted(np.asarray(bounds), t_col)  # (Wside,)
    heights = rng.uniform(1.5, 6.0, count)  # [camera heights above the camera]
    trees = rng.random(count) < 0.18  # True: trees instead of a building
    colors = np.array(
        [_jitter(rng, _FACADE_COLORS[i], 0.12) for i in rng.integers(6, size=count)], np.float32
    )
    spacing = rng.uniform(1.2, 2.5, count)  # windows per unit of depth
    heights[0], trees[0] = max(heights[0], 3.0), False

    y = np.arange(canvas.height, dtype=np.float32)[:, None] + 0.5
    scale = t_col * street.ground  # (Wside,) px per camera height
    v = (street.y_h - y) / scale  # (H, Wside) height above the camera [camera heights]
    top = heights[segment]
    facade = (v > -1.0) & (v <= top)  # v = -1 is the foot of the facade
    r, c = np.nonzero(facade & ~trees[segment])
    if r.size:
        seg, image_c = segment[c], c + columns.start
        fine, medium = canvas.fine[r, image_c], street.medium[r, image_c]
        floor = v[r, c] + 1.0  # height above the ground; a storey is 2 units
        storey = np.mod(floor / 2.0, 1.0)
        along = np.mod(spacing[seg] / t_col[c], 1.0)  # depth x windows per unit depth
        big = scale[c] > 4.0  # windows only where they are at least ~2 px
        windows = big & (floor > 2.0) & (storey > 0.35) & (storey < 0.8)
        windows &= (along > 0.3) & (along < 0.75)
        shade = colors[seg] + (7.0 * fine + 10.0 * medium)[:, None]
        shade[windows] = (55.0 + 25.0 * medium[windows] + 4.0 * fine[windows])[:, None]
        shade -= 30.0 * (big & (storey < 0.06))[:, None]  # ledges between storeys
        canvas.rgb[r, image_c] = shade
        canvas.label[r, image_c] = _ID["building"]
    medium_side = street.medium[:, columns]
    r, c = np.nonzero(facade & trees[segment] & (v <= top * (0.75 + 0.2 * medium_side)))
    if r.size:
        image_c = c + columns.start
        noise = 22.0 * canvas.fine[r, image_c] + 18.0 * street.medium[r, image_c]
        canvas.rgb[r, image_c] = np.float32((60, 90, 40)) + noise[:, None]
        canvas.label[r, image_c] = _ID["vegetation"]


def _paint_fence(street: _Street, side: int) -> None:
    """A fence ~1 m high along the outer edge of one sidewalk, over a range of depths."""
    canvas, rng = street.canvas, street.rng
    columns, t_col = street.column_depth(side, street.walk_out(side))
    t_near, t_far = rng.uniform(0.6, 3.0), rng.uniform(0.05, 0.3)
    height = rng.uniform(0.5, 0.8)  # [camera heights]
    color = _jitter(rng, (120, 105, 90) if rng.random() < 0.5 else (150, 150, 150), 0.1)
    y = np.arange(canvas.height, dtype=np.float32)[:, None] + 0.5
    scale = t_col * street.ground
    v = (street.y_h - y) / scale + 1.0  # height above the ground [camera heights]
    region = (t_col > t_far) & (t_col < t_near) & (v > 0.0) & (v <= height)
    r, c = np.nonzero(region)
    if not r.size:
        return
    rail = np.abs(v[r, c] - 0.9 * height) < 0.06
    bars = (np.mod(12.0 / t_col[c], 1.0) < 0.35) | rail
    shade = np.where(bars[:, None], color, 0.55 * color)
    shade += 5.0 * canvas.fine[r, c + columns.start][:, None]
    canvas.rgb[r, c + columns.start] = shade
    canvas.label[r, c + columns.start] = _ID["fence"]


def _paint_tree(street: _Street, side: int, t: float) -> None:
    """A street tree at the outer edge of a sidewalk: trunk and a ragged crown (vegetation)."""
    canvas, rng = street.canvas, street.rng
    y, x, scale = street.foot(side, t, street.walk_out(side) - 0.15 * street.walk[side])
    trunk, crown = rng.uniform(1.5, 2.5), rng.uniform(1.2, 2.2)  # [camera heights]
    bark = _jitter(rng, (75, 60, 45), 0.15)
    canvas.rect(y - trunk * scale, y, x - 0.1 * scale, x + 0.1 * scale, _ID["vegetation"], bark)
    radius = crown * scale
    cy = y - (trunk + 0.7 * crown) * scale
    where = canvas.box(cy - radius, cy + radius, x - radius, x + radius)
    if where is None:
        return
    r, c = where
    yy = (np.arange(r.start, r.stop) + 0.5 - cy)[:, None] / radius
    xx = (np.arange(c.start, c.stop) + 0.5 - x)[None, :] / radius
    mask = yy**2 + xx**2 <= 0.75 + 0.25 * street.medium[r, c]
    leaves = _jitter(rng, (65, 95, 40), 0.2) + 16.0 * street.medium[r, c, None]
    canvas.paint(where, _ID["vegetation"], leaves, texture=20.0, mask=mask)


def _paint_pole(street: _Street, side: int, t: float, kind: str) -> None:
    """A pole near the kerb; ``kind`` "sign" or "light" puts one at its top ("plain": none)."""
    canvas, rng = street.canvas, street.rng
    y, x, scale = street.foot(
        side, t, street.road[side] + rng.uniform(0.1, 0.4) * street.walk[side]
    )
    height = min(rng.uniform(2.5, 4.5), 0.92 * y / scale)  # keep the top in the frame
    half = max(0.5, 0.035 * scale)
    metal = _jitter(rng, (85, 88, 92), 0.2)
    canvas.rect(y - height * scale, y, x - half, x + half, _ID["pole"], metal, texture=4.0)
    top = y - height * scale
    if kind == "sign":
        size = max(2.0, 0.5 * scale)
        style = int(rng.integers(3))
        color = ((35, 80, 170), (200, 30, 35), (235, 200, 40))[style]
        sign = _ID["traffic sign"]
        if style == 1:
            canvas.ellipse(top + size / 2, x, size / 2, size / 2, sign, color, 5.0)
            canvas.ellipse(top + size / 2, x, size / 3, size / 3, sign, (235, 235, 235), 5.0)
        else:
            canvas.rect(top, top + size, x - size / 2, x + size / 2, sign, color, 5.0)
            inner = (top + size / 3, top + 2 * size / 3, x - size / 4, x + size / 4)
            canvas.rect(*inner, sign, (235, 235, 235), 5.0)
    elif kind == "light":
        box_w, box_h = max(2.0, 0.25 * scale), max(3.0, 0.7 * scale)
        light = _ID["traffic light"]
        canvas.rect(top, top + box_h, x - box_w / 2, x + box_w / 2, light, (35, 35, 38), 4.0)
        lit = int(rng.integers(3))
        for i, lamp in enumerate(((255, 60, 40), (255, 180, 40), (60, 230, 120))):
            color = lamp if i == lit else (60, 60, 60)
            canvas.ellipse(top + (i + 0.5) * box_h / 3, x, box_h / 8, box_w / 3, light, color, 3.0)


def _paint_car(street: _Street, t: float) -> None:
    """A car seen from behind on the road: body, cabin, rear window, wheels, tail lights."""
    canvas, rng = street.canvas, street.rng
    left, right = street.road
    margin = 0.6 * 1.2 * street.ground  # bottom-equivalent half width of a car [px]
    offset = rng.uniform(-left + margin, right - margin) if right + left > 2 * margin else 0.0
    y, x, scale = street.foot(1, t, offset)
    width, height = 1.2 * scale, rng.uniform(0.9, 1.1) * scale
    body = _jitter(rng, _CAR_COLORS[int(rng.integers(len(_CAR_COLORS)))], 0.1)
    car, tyre = _ID["car"], (25, 25, 25)
    canvas.rect(y - 0.18 * scale, y, x - 0.45 * width, x - 0.25 * width, car, tyre, 3.0)
    canvas.rect(y - 0.18 * scale, y, x + 0.25 * width, x + 0.45 * width, car, tyre, 3.0)
    canvas.rect(y - 0.6 * height, y - 0.12 * height, x - width / 2, x + width / 2, car, body, 4.0)
    canvas.rect(y - height, y - 0.58 * height, x - 0.38 * width, x + 0.38 * width, car, body, 4.0)
    glass = (y - 0.93 * height, y - 0.63 * height, x - 0.32 * width, x + 0.32 * width)
    canvas.rect(*glass, car, (45, 50, 60), 8.0)
    for sign in (-1, 1):
        lamp = x + sign * 0.47 * width
        canvas.rect(
            y - 0.5 * height,
            y - 0.4 * height,
            lamp - 0.06 * width,
            lamp + 0.06 * width,
            car,
            (190, 25, 25),
            4.0,
        )


def _paint_person(street: _Street, side: int, t: float) -> None:
    """A pedestrian on a sidewalk: legs, torso, arms and head, about 1.7 m tall."""
    canvas, rng = street.canvas, street.rng
    offset = street.road[side] + rng.uniform(0.15, 0.9) * street.walk[side]
    y, x, scale = street.foot(side, t, offset)
    height = rng.uniform(1.0, 1.25) * scale
    person = _ID["person"]
    shirt = _jitter(rng, _CLOTHES[int(rng.integers(len(_CLOTHES)))], 0.15)
    trousers = _jitter(rng, _CLOTHES[int(rng.integers(len(_CLOTHES)))], 0.15)
    half = max(0.5, 0.13 * height)
    stride = rng.uniform(0.0, 0.08) * height
    legs = y - 0.48 * height
    canvas.rect(legs, y, x - half - stride, x - 0.1 * half - stride / 2, person, trousers, 5.0)
    canvas.rect(legs, y, x + 0.1 * half + stride / 2, x + half + stride, person, trousers, 5.0)
    canvas.rect(
        y - 0.8 * height,
        y - 0.5 * height,
        x - 1.35 * half,
        x + 1.35 * half,
        person,
        0.85 * shirt,
        5.0,
    )
    canvas.rect(y - 0.83 * height, y - 0.45 * height, x - half, x + half, person, shirt, 5.0)
    skin = _SKIN[int(rng.integers(len(_SKIN)))]
    canvas.ellipse(y - 0.92 * height, x, 0.08 * height, 0.065 * height, person, skin, 4.0)
