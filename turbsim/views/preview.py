"""Preview sheets of generated shards: clean | distorted | displacement field | labels.

The field panel shows the stored flow when the dataset has one; otherwise the exact field is
recomputed from the manifest's recipe and the sample's seed (see
:func:`turbsim.pipeline.render.sample_field`), so every dataset can be previewed. Drawing uses
OpenCV only (no matplotlib).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from turbsim import shards
from turbsim._files import write_bytes
from turbsim.pipeline.recipe import Recipe
from turbsim.shards.schema import NUM_CLASSES
from turbsim.sources.cityscapes import TRAIN_ID_NAMES, TRAIN_ID_PALETTE, colorize_train_ids
from turbsim.views.viz import colour_wheel, field_to_rgb

_TITLE_H = 22


def _titled(panel: np.ndarray, title: str) -> np.ndarray:
    bar = np.full((_TITLE_H, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(
        bar, title, (4, _TITLE_H - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
    )
    return np.vstack([bar, panel])


def draw_arrows(panel: np.ndarray, field: np.ndarray, step: int | None = None) -> np.ndarray:
    """Overlay white arrows along F (2, H, W) [px] on an RGB panel, one every ``step`` px.

    Arrows are drawn at true length (x1 if |F| is large enough to see, else scaled up so the
    longest arrow is step/2 px); the scale used is returned in the title by the caller.
    """
    h, w = field.shape[1:]
    step = step or max(8, min(h, w) // 12)
    out = panel.copy()
    mag = float(np.hypot(field[0], field[1]).max()) or 1.0
    scale = max(1.0, 0.5 * step / mag)
    for r in range(step // 2, h, step):
        for c in range(step // 2, w, step):
            dr, dc = field[0, r, c] * scale, field[1, r, c] * scale
            cv2.arrowedLine(
                out,
                (c, r),
                (int(round(c + dc)), int(round(r + dr))),
                (255, 255, 255),
                1,
                cv2.LINE_AA,
                tipLength=0.3,
            )
    return out


def paste_wheel(panel: np.ndarray) -> np.ndarray:
    """The colour-wheel legend of :func:`turbsim.views.viz.field_to_rgb` in the top-left corner of
    an RGB panel (a disc of a fifth of its smaller side, at least 16 px; hue = direction, white at
    the centre = no displacement); panels under 24 px are returned unchanged."""
    size = min(panel.shape[:2]) // 5
    if size < 16 or min(panel.shape[:2]) < 24:
        return panel
    wheel = colour_wheel(size)
    alpha = wheel[..., 3:4].astype(np.float32) / 255.0
    out = panel.copy()
    corner = out[2 : 2 + size, 2 : 2 + size].astype(np.float32)
    blended = wheel[..., :3].astype(np.float32) * alpha + corner * (1.0 - alpha)
    out[2 : 2 + size, 2 : 2 + size] = np.round(blended).astype(np.uint8)
    return out


def class_key(label: np.ndarray, width: int) -> np.ndarray:
    """A white strip (RGB uint8, ``width`` px wide) with a swatch and the name of every class
    present in the trainId image ``label``, in trainId order; void (255) as a black swatch."""
    ids = [int(i) for i in np.unique(label) if i < NUM_CLASSES]
    entries = [(TRAIN_ID_NAMES[i], tuple(int(v) for v in TRAIN_ID_PALETTE[i])) for i in ids]
    if np.any(label >= NUM_CLASSES):
        entries.append(("void / ignore", (0, 0, 0)))
    lines: list[list[tuple[str, tuple[int, int, int]]]] = [[]]
    x = 4
    for name, colour in entries:
        step = 16 + cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)[0][0] + 10
        if x + step > width and lines[-1]:
            lines.append([])
            x = 4
        lines[-1].append((name, colour))
        x += step
    strip = np.full((6 + 16 * len(lines), width, 3), 255, np.uint8)
    for k, line in enumerate(lines):
        x, y = 4, 4 + 16 * k
        for name, colour in line:
            cv2.rectangle(strip, (x, y), (x + 11, y + 11), colour, -1)
            cv2.rectangle(strip, (x, y), (x + 11, y + 11), (128, 128, 128), 1)
            cv2.putText(
                strip,
                name,
                (x + 16, y + 10),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4,
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
            x += 16 + cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)[0][0] + 10
    return strip


def sample_sheet(item: dict, field: np.ndarray, title: str = "") -> np.ndarray:
    """One row: clean | distorted | field (colour wheel + arrows, with the wheel's legend) |
    label colours, RGB uint8, over a key of the classes present. The field is in the stored
    image's pixels (the stored flow, or the native field resized and scaled to them)."""
    mag = float(np.hypot(field[0], field[1]).max())
    flow_panel = paste_wheel(draw_arrows(field_to_rgb(field), field))
    panels = [
        _titled(item["clean"], f"clean {title}".strip()),
        _titled(item["distorted"], "distorted"),
        _titled(flow_panel, f"field [stored px], max {mag:.1f} px"),
        _titled(colorize_train_ids(item["label"]), "labels (clean frame)"),
    ]
    sep = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    row = panels[0]
    for p in panels[1:]:
        row = np.hstack([row, sep, p])
    return np.vstack([row, class_key(item["label"], row.shape[1])])


def _write_png(path: Path, rgb: np.ndarray) -> None:
    """Publish an RGB (H, W, 3) uint8 image as PNG, atomically (turbsim._files)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: could not write PNG")
    write_bytes(path, encoded.tobytes())


def preview(
    root: Path, out_dir: Path, split: str | None = None, count: int = 4, raw: bool = False
) -> list[Path]:
    """Write one PNG sheet per sample (the first ``count`` of ``split``) and an overview sheet.

    With ``raw``, also the plain ``*_distorted.png`` and ``*_clean.png`` images (e.g. to feed
    ``fbseg predict``). Returns the written paths (overview last).
    """
    from turbsim.pipeline.render import resize_field, sample_field

    root, out_dir = Path(root), Path(out_dir)
    manifest = shards.read_manifest(root)
    recipe = Recipe(manifest["recipe"])
    splits = [split] if split else list(manifest["recipe"]["splits"])
    held = {s["split"] for s in manifest["shards"]}
    if split and split not in held:
        raise shards.ShardError(
            f"{root}: no shards for split {split!r} (the folder holds: {', '.join(sorted(held))})",
            key="split",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rows: list[np.ndarray] = []
    for sp in splits:
        infos = [s for s in manifest["shards"] if s["split"] == sp]
        native = tuple(manifest.get("native_sizes", {}).get(sp, ()))
        for info in infos:
            with shards.ShardReader(root / info["file"]) as reader:
                for i in range(len(reader)):
                    if len(rows) >= count:
                        break
                    item = reader[i]
                    field = item.get("flow")
                    if field is None:
                        shape = native or item["clean"].shape[:2]
                        field, _ = sample_field(
                            recipe, sp, item["name"], int(item["variant"]), shape
                        )
                        field = resize_field(field, item["clean"].shape[:2])
                    sheet = sample_sheet(item, field, f"{sp}/{item['name']}")
                    stem = f"{sp}_{item['name']}_v{int(item['variant'])}"
                    path = out_dir / f"{stem}.png"
                    _write_png(path, sheet)
                    written.append(path)
                    if raw:
                        for key in ("distorted", "clean"):
                            written.append(out_dir / f"{stem}_{key}.png")
                            _write_png(written[-1], item[key])
                    rows.append(sheet)
            if len(rows) >= count:
                break
    if rows:
        width = max(r.shape[1] for r in rows)
        padded = [
            np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows
        ]
        overview = out_dir / "overview.png"
        _write_png(overview, np.vstack(padded))
        written.append(overview)
    return written


def cn2_sweep(
    root: Path,
    out_png: Path,
    cn2_values: list[float],
    split: str | None = None,
    name: str | None = None,
) -> Path:
    """One scene distorted at increasing Cn2 [m^-2/3]: tilt only, and tilt + blur below.

    The first row is the clean frame, then the tilt-only panels; the second row shows the same
    panels with the mean short-exposure blur of the same atmosphere (SPEC section 8), so the
    physics' two effects are seen side by side. The same random numbers (the sample's seed) are
    used for every Cn2, so the panels show one field scaled by sqrt(Cn2): only the strength
    changes. The other parameters come from the dataset's recipe (ranges sampled as for that
    sample). The blur is applied at the stored size, with the focal length scaled to it.
    """
    from turbsim.physics.blur import blur_fwhm_px, blur_image
    from turbsim.physics.theory import sigma_r_px
    from turbsim.physics.warp import warp_image
    from turbsim.pipeline.render import resize_field, sample_field

    root = Path(root)
    manifest = shards.read_manifest(root)
    recipe = Recipe(manifest["recipe"])
    infos = [s for s in manifest["shards"] if split is None or s["split"] == split]
    item = None
    for info in infos:
        with shards.ShardReader(root / info["file"]) as reader:
            for i in range(len(reader)):
                if name is None or reader.names[i] == name:
                    item, sp = reader[i], info["split"]
                    break
        if item is not None:
            break
    if item is None:
        raise shards.ShardError(f"{root}: no sample {name or ''} in split {split or 'any'}")
    clean = item["clean"]
    shape = tuple(manifest.get("native_sizes", {}).get(sp, clean.shape[:2]))
    unit, params = sample_field(recipe, sp, item["name"], int(item["variant"]), shape)
    unit = resize_field(unit, clean.shape[:2]) / np.float32(sigma_r_px(params))
    scale = clean.shape[0] / shape[0]  # stored pixels per native pixel
    tilt_row = [_titled(clean, f"clean {item['name']}")]
    blur_row = [_titled(np.full_like(clean, 255), "tilt + blur (same air)")]
    for cn2 in cn2_values:
        p = params.with_cn2(float(cn2))
        field = unit * np.float32(sigma_r_px(p))  # unit already carries the resize scale
        warped = warp_image(clean, field, recipe.border)
        stored = replace(p, focal_length_px=p.focal_length_px * scale)
        tilt_row.append(_titled(warped, f"Cn2 {cn2:.0e}: tilt {sigma_r_px(p) * scale:.2f} px"))
        blur_row.append(
            _titled(blur_image(warped, stored), f"+ blur FWHM {blur_fwhm_px(stored):.2f} px")
        )
    sep = np.full((tilt_row[0].shape[0], 4, 3), 255, np.uint8)
    rows = []
    for panels in (tilt_row, blur_row):
        row = panels[0]
        for panel in panels[1:]:
            row = np.hstack([row, sep, panel])
        rows.append(row)
    gap = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    _write_png(out_png, np.vstack([rows[0], gap, rows[1]]))
    return out_png
