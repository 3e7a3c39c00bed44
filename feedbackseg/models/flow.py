"""Backward warping of images by a dense displacement field (the restorer's output stage).

The restoration U-Net (SPEC 2.2) predicts a flow field in pixels and the restored image is the
distorted input sampled at the displaced positions. :func:`warp` does this with
``torch.nn.functional.grid_sample(mode="bilinear", padding_mode="border", align_corners=True)``,
which with those settings is exactly turbsim's ``warp_image(image, field, border="clamp")``:
bilinear interpolation between pixel centres at integer coordinates, sample coordinates clamped
to the pixel-centre rectangle ``[0, H-1] x [0, W-1]``.

Precision: the sampling grid is built and the sampling is done in float32 whatever the input
dtype and even inside an autocast region. ``grid_sample`` takes coordinates normalised to
[-1, 1]; in bfloat16 (8 significant bits) a normalised coordinate on a 2048-px axis is only
resolved to about 8 px, so a low-precision grid would silently destroy the sub-pixel flow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["flow_to_grid", "identity_grid", "warp"]


def identity_grid(
    height: int, width: int, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates of an ``height x width`` image, in float32.

    Convention:
        Row index ``r`` (down positive) and column index ``c`` (right positive) in pixels, pixel
        centres at integer coordinates, origin at the centre of the top-left pixel.

    Args:
        height: Number of rows H >= 1.
        width: Number of columns W >= 1.
        device: Device of the returned tensors.

    Returns:
        ``(rows, cols)``: float32 tensors of shape (H, 1) and (1, W) (broadcastable to (H, W))
        holding ``r`` and ``c``.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be at least 1 x 1, got {height} x {width}")
    rows = torch.arange(height, dtype=torch.float32, device=device).view(height, 1)
    cols = torch.arange(width, dtype=torch.float32, device=device).view(1, width)
    return rows, cols


def _normalise_scale(size: int) -> float:
    """Factor mapping a pixel coordinate in [0, size-1] to [0, 2] (``align_corners=True``).

    A single-pixel axis has no extent: every coordinate is clamped to pixel 0. The factor 0
    maps every coordinate to the normalised value -1, which ``grid_sample`` unnormalises to 0
    for a size-1 axis, instead of dividing by ``size - 1 == 0``.
    """
    return 2.0 / (size - 1) if size > 1 else 0.0


def flow_to_grid(flow: Tensor) -> Tensor:
    """Turn a displacement field in pixels into a ``grid_sample`` grid (``align_corners=True``).

    Convention:
        ``flow[:, 0]`` is the row displacement (down positive) and ``flow[:, 1]`` the column
        displacement (right positive), in pixels. The output pixel ``(r, c)`` samples the input
        at ``(r + flow[:, 0, r, c], c + flow[:, 1, r, c])``. The grid's last axis is ``(x, y)``
        = (column, row) normalised so that pixel centre 0 maps to -1 and pixel centre ``W-1``
        (``H-1``) maps to +1, as ``grid_sample(align_corners=True)`` expects. For a size-1
        axis the normalised coordinate is -1 everywhere (the only pixel).

    Args:
        flow: (B, 2, H, W) displacement [px], any float dtype.

    Returns:
        (B, H, W, 2) grid, float32 (float64 for a float64 ``flow``), differentiable with
        respect to ``flow``.
    """
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"flow must be (B, 2, H, W) with [:, 0] row and [:, 1] column displacement, "
            f"got shape {tuple(flow.shape)}"
        )
    height, width = flow.shape[-2:]
    rows, cols = identity_grid(height, width, flow.device)
    if flow.dtype != torch.float64:
        flow = flow.float()
    gx = (cols + flow[:, 1]) * _normalise_scale(width) - 1.0
    gy = (rows + flow[:, 0]) * _normalise_scale(height) - 1.0
    return torch.stack((gx, gy), dim=-1)


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """Warp images by a per-pixel displacement field with bilinear interpolation (clamped border).

    Convention:
        ``out(r, c) = image(r + flow[:, 0, r, c], c + flow[:, 1, r, c])`` with ``r`` the row and
        ``c`` the column in pixels, pixel centres at integer coordinates. The field says where
        each output pixel samples from, so image content moves by ``-flow``: a constant field
        ``(0, +3)`` moves an impulse 3 px LEFT (column 10 -> column 7), ``(+2, 0)`` moves it
        2 px up. Sample points outside the pixel-centre rectangle ``[0, H-1] x [0, W-1]`` are
        clamped to it (edge pixels extend outward). This is ``turbsim.warp_image(image_hwc,
        flow_2hw, border="clamp")`` of the dataset generator, the same sign and axis order.

    Arithmetic: the grid is built and the sampling done in float32 (float64 when ``image`` and
    ``flow`` are both float64), with autocast disabled inside; ``image`` is cast to that dtype
    for the sampling and the result is cast back to ``image.dtype``. A float16/bfloat16 image
    therefore loses only the final rounding, never the sub-pixel position. The normalisation
    to grid_sample's [-1, 1] and back costs about one float32 ulp of the coordinate (an integer
    shift is exact only to ~1e-7 of the image range). Gradients flow to both ``image`` and
    ``flow``; the gradient with respect to a flow component is 0 where the sample point is
    clamped. Non-finite flow values are not checked (that would synchronise with the device);
    grid_sample propagates them into the output.

    Args:
        image: (B, C, H, W) images, floating point, any C >= 1, H, W >= 1.
        flow: (B, 2, H, W) displacement [px]; ``flow[:, 0]`` row (down positive), ``flow[:, 1]``
            column (right positive). Same batch size, height and width as ``image``.

    Returns:
        (B, C, H, W) warped images, dtype and device of ``image``.

    Raises:
        ValueError: bad number of dimensions or mismatched shapes.
        TypeError: ``image`` is not floating point.
    """
    if image.ndim != 4:
        raise ValueError(f"image must be (B, C, H, W), got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise TypeError(f"image must be a floating-point tensor, got {image.dtype}")
    b, _, h, w = image.shape
    if flow.shape != (b, 2, h, w):
        raise ValueError(
            f"flow shape {tuple(flow.shape)} does not match image shape {tuple(image.shape)}: "
            f"expected ({b}, 2, {h}, {w}) with [:, 0] row and [:, 1] column displacement"
        )
    # float32 at least; float64 when both inputs are float64 (exact checks, gradcheck).
    work = torch.float64 if image.dtype == flow.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=image.device.type, enabled=False):
        grid = flow_to_grid(flow).to(work)
        out = F.grid_sample(
            image.to(work), grid, mode="bilinear", padding_mode="border", align_corners=True
        )
    return out.to(image.dtype)
