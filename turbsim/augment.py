"""Fresh turbulence for every sample, in PyTorch on the CPU or a GPU: :class:`RandomTurbulence`.

The shards of ``turbsim generate`` hold a fixed sample of the law of the distortion; training
wants fresh draws of that law. This module renders the same Technion tilt fields (Schwartzman et
al., ICCP 2017; :mod:`turbsim.physics.field`) and the same blur of the same air
(:mod:`turbsim.physics.blur`) with torch, batched, on any device: per field only noise, two inverse
FFTs with the cached filter, a scale, a bilinear sample and (with blur) one FFT multiply. It is the
only turbsim module that imports torch (``import turbsim`` never loads it).

The functional core is exact, i.e. equal on the same inputs to the numpy path to float32
precision (tests hold it):

- :func:`render_unit_fields` = :func:`turbsim.physics.field.render_unit_field` per sample;
- :func:`warp` = :func:`turbsim.warp_image` (float images to 1e-4, uint8 to one grey level);
- :func:`blur_images` = :func:`turbsim.blur_image` per sample.

Convention (turbsim's README): a flow / field is (B, 2, H, W) float32 [px], [:, 0] the row
(down positive) and [:, 1] the column (right positive) displacement; the warp samples the clean
image at p + F(p), so content moves by -F.

Stored size (``native_size``): ``turbsim generate --size`` distorts at the native size N and
area-resizes the result to the stored size S. Given images already at S, the module renders the
field at N (so it has the native correlation scale and roughness), normalises it there, and then
applies it at S as

    distorted_S = blur_S(warp(images_S, A(F_N)))

with A the area average of the field to S scaled to stored pixels
(:func:`turbsim.physics.resample.area_resize_field`) and blur_S the native blur with its frequencies
expressed in stored pixels (``pixel_scale`` = S / N of
:func:`turbsim.physics.blur.transfer_function`). What ``generate`` computes instead is
area_S(blur_N(warp(images_N, F_N))). The two differ by the variation of F_N inside one stored
pixel's footprint (the stored image averages differently displaced native pixels; the approximation
takes the mean displacement) and by the order of the area average and the blur (both linear; they
commute up to boundary terms). The returned flow is A(F_N): the displacement the stored image shows.
``benchmarks/bench_augment.py --accuracy`` measures the error on the built-in scenes (README).
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from turbsim.physics import blur as _blur
from turbsim.physics.choices import BORDERS
from turbsim.physics.field import SpectralFilter, spectral_filter, stored_scale_filter
from turbsim.physics.params import TurbulenceParams
from turbsim.physics.resample import area_weights
from turbsim.physics.theory import sigma_r_px
from turbsim.pipeline.recipe import Recipe, RecipeError, resolve_recipe

__all__ = [
    "RandomTurbulence",
    "area_resize_fields",
    "blur_images",
    "draw_noise",
    "render_unit_fields",
    "warp",
]

#: Device copies of spectral filters kept (each 4 x 2H x (W + 1) float32: 67 MB at 1024x2048).
_FILTER_CACHE_SIZE = 8
#: At most this many bytes of work go through one batched operation: large on a GPU (fewer
#: launches), small on the CPU, where a batch that leaves the caches is slower per frame
#: (measured: 256x512 fields + warps at batch 32 ran at half the rate of batch 1 in one pass).
_CHUNK_BYTES = {"cpu": 8 * 2**20, "other": 256 * 2**20}
#: Where RandomTurbulence renders its fields (see its ``render`` argument).
RENDERS = ("native", "stored")


def _chunk(device: torch.device, item_bytes: int, count: int) -> int:
    """How many items of ``item_bytes`` to process at once on ``device`` (>= 1)."""
    budget = _CHUNK_BYTES["cpu" if device.type == "cpu" else "other"]
    return max(1, min(count, budget // max(1, item_bytes)))


_filters: OrderedDict[tuple[SpectralFilter, str], tuple[Tensor, Tensor, Tensor]] = OrderedDict()


def _filter_tensors(filt: SpectralFilter, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(k_cc, k_rr, k_cr) of ``filt`` on ``device``, transposed to (W + 1, 2H) (an LRU).

    The transposed layout puts the 2H axis of the first inverse FFT last (contiguous), which
    makes that FFT and the filter product about twice as fast on the CPU.
    """
    key = (filt, str(device))
    found = _filters.get(key)
    if found is None:
        found = tuple(
            torch.from_numpy(np.ascontiguousarray(np.swapaxes(k, -1, -2))).to(device)
            for k in (filt.k_cc, filt.k_rr, filt.k_cr)
        )
        _filters[key] = found  # type: ignore[assignment]
        while len(_filters) > _FILTER_CACHE_SIZE:
            _filters.popitem(last=False)
    else:
        _filters.move_to_end(key)
    return found  # type: ignore[return-value]


def draw_noise(
    shape: tuple[int, int],
    batch: int = 1,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Standard complex normal noise in the layout of :func:`turbsim.physics.field.draw_noise`.

    Args:
        shape: the field's (H, W) [px].
        batch: number of fields B.
        generator: the source of randomness (its device is where the noise is drawn); None:
            torch's default generator of ``device``.
        device: where to draw when no generator is given (default: the CPU).

    Returns:
        complex64 (B, 2, 2H, W + 1), real and imaginary parts ~ N(0, 1) ([:, 0] drives the
        column component, [:, 1] the row one).
    """
    h, w = (int(s) for s in shape)
    if generator is not None:
        device = generator.device
    real = torch.randn(
        (batch, 2, 2 * h, w + 1, 2), generator=generator, device=device, dtype=torch.float32
    )
    return torch.view_as_complex(real)


def _render(filt: SpectralFilter, noise_t: Tensor, spec: Tensor | None = None) -> Tensor:
    """Unit fields (B, 2, H, W) from noise in the transposed layout.

    Args:
        filt: the filter.
        noise_t: (B, 2, W + 1, 2H, 2) float32, the real and imaginary parts last.
        spec: an optional float32 buffer of that shape to reuse.

    The filter product runs on the real views (a real filter times both parts: twice as fast
    on the CPU as torch's real-times-complex product).
    """
    h, w = filt.shape
    k_cc, k_rr, k_cr = (k[..., None] for k in _filter_tensors(filt, noise_t.device))
    zc, zr = noise_t[:, 0], noise_t[:, 1]
    if spec is None:
        spec = torch.empty(noise_t.shape, dtype=torch.float32, device=noise_t.device)
    torch.mul(zr, k_rr, out=spec[:, 0])
    spec[:, 0].addcmul_(zc, k_cr[1])
    torch.mul(zc, k_cc, out=spec[:, 1])
    spec[:, 1].addcmul_(zr, k_cr[0])
    rows = torch.fft.ifft(torch.view_as_complex(spec), dim=-1)[..., filt.row0 : filt.row0 + h]
    full = torch.fft.irfft(rows.transpose(-1, -2).contiguous(), n=2 * w, dim=-1)
    return full[..., filt.col0 : filt.col0 + w].contiguous()


def render_unit_fields(filt: SpectralFilter, noise: Tensor) -> Tensor:
    """Unit-ensemble-variance fields from half-plane noise: float32 (B, 2, H, W) [1].

    The batched torch form of :func:`turbsim.physics.field.render_unit_field`, equal to it on the
    same noise to float32 precision: the 2x2 filter K applied per frequency, an inverse FFT along
    the 2H rows of which the central H are kept, an inverse real FFT of length 2W along the
    columns, the central W columns.

    Args:
        filt: from :func:`turbsim.physics.field.spectral_filter` (the filter of shape (H, W)).
        noise: (B, 2, 2H, W + 1) complex (or (2, 2H, W + 1): then the result is (2, H, W)), on
            any device; [:, 0] drives the column component (Z_c), [:, 1] the row one.

    Returns:
        float32 (B, 2, H, W) on the noise's device; [:, 0] row, [:, 1] column.
    """
    h, w = filt.shape
    single = noise.ndim == 3
    if single:
        noise = noise[None]
    if noise.ndim != 4 or tuple(noise.shape[1:]) != (2, 2 * h, w + 1):
        raise ValueError(
            f"noise must be (B, 2, {2 * h}, {w + 1}) complex for a {h}x{w} filter, "
            f"got {tuple(noise.shape)}"
        )
    noise_t = torch.view_as_real(noise.to(torch.complex64).transpose(-1, -2).contiguous())
    out = _render(filt, noise_t)
    return out[0] if single else out


def area_resize_fields(fields: Tensor, out_shape: tuple[int, int]) -> Tensor:
    """The displacement stored images show: fields area-averaged to ``out_shape``, scaled.

    The torch form of :func:`turbsim.physics.resample.area_resize_field` (``cv2.INTER_AREA``
    weights; exact block means for integer ratios).

    Args:
        fields: (B, 2, H_n, W_n) displacement [native px].
        out_shape: (H, W) [px], at most (H_n, W_n).

    Returns:
        float32 (B, 2, H, W) [stored px]: row component times H / H_n, column times W / W_n.
    """
    h, w = (int(s) for s in out_shape)
    nh, nw = fields.shape[-2:]
    if (h, w) == (nh, nw):
        return fields
    if not (h <= nh and w <= nw):
        raise ValueError(f"stored size {h}x{w} must be within the field's {nh}x{nw}")
    if nh % h == 0 and nw % w == 0:
        out = F.avg_pool2d(fields, (nh // h, nw // w))
    else:
        rows = torch.from_numpy(area_weights(nh, h).astype(np.float32)).to(fields.device)
        cols = torch.from_numpy(area_weights(nw, w).astype(np.float32)).to(fields.device)
        out = rows @ fields @ cols.T
    scale = torch.tensor([h / nh, w / nw], dtype=torch.float32, device=fields.device)
    return out * scale.view(1, 2, 1, 1)


# ------------------------------------------------------------------------------------- warp
_PADDING = {"clamp": "border", "zero": "border", "reflect": "reflection"}


def _normalised(coordinate: Tensor, n: int) -> Tensor:
    """Pixel coordinate -> grid_sample's [-1, 1] (align_corners=True); a 1-px axis -> -1."""
    return coordinate * (2.0 / (n - 1)) - 1.0 if n > 1 else torch.full_like(coordinate, -1.0)


def warp(images: Tensor, flow: Tensor, border: str = "clamp") -> Tensor:
    """Warp images by per-pixel displacements with bilinear interpolation.

    Convention: ``out(r, c) = image(r + flow[:, 0, r, c], c + flow[:, 1, r, c])``, pixel
    centres at integer coordinates, so content moves by -flow (a constant (0, +3) moves an
    impulse 3 px left). Equal to :func:`turbsim.warp_image` on the same inputs: float images to
    1e-4 of their range, uint8 to one grey level (rounded ``floor(v + 0.5)`` and clipped).
    Implemented with ``grid_sample(align_corners=True)`` ("border" padding for clamp,
    "reflection" for reflect-101 about the edge pixel centres; "zero" is the clamped sample
    times the inside mask, as turbsim's). The sample coordinates are float32 (float64 for
    float64 images): ~1e-4 px of rounding at 2048 px.

    Args:
        images: (B, C, H, W) uint8 or floating point, on any device.
        flow: (B, 2, H, W) displacement [px], finite.
        border: "clamp" (default), "reflect" (reflect-101) or "zero" (0 where the sample point
            is outside the pixel-centre rectangle), as :data:`turbsim.physics.choices.BORDERS`.

    Returns:
        (B, C, H, W), the dtype and device of ``images``; float64 images are computed in
        float64, everything else in float32. Differentiable (float images and the flow).

    Raises:
        ValueError: shapes that do not match, an unknown border, a non-finite flow value.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    b, c, h, w = images.shape
    if tuple(flow.shape) != (b, 2, h, w):
        raise ValueError(
            f"flow must be ({b}, 2, {h}, {w}) for these images, got {tuple(flow.shape)}"
        )
    if border not in BORDERS:
        raise ValueError(f"border must be one of {', '.join(BORDERS)}; got {border!r}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
    work = torch.float64 if images.dtype == torch.float64 else torch.float32
    flow = flow.to(images.device, work)
    if not bool(torch.isfinite(flow).all()):
        raise ValueError("flow contains non-finite values (NaN or inf)")
    y = torch.arange(h, device=images.device, dtype=work).view(1, h, 1) + flow[:, 0]
    x = torch.arange(w, device=images.device, dtype=work).view(1, 1, w) + flow[:, 1]
    grid = torch.stack((_normalised(x, w), _normalised(y, h)), dim=-1)
    with torch.autocast(device_type=images.device.type, enabled=False):
        out = F.grid_sample(
            images.to(work), grid, mode="bilinear", padding_mode=_PADDING[border],
            align_corners=True,
        )  # fmt: skip
    if border == "zero":
        inside = (y >= 0) & (y <= h - 1) & (x >= 0) & (x <= w - 1)
        out = out * inside[:, None].to(work)
    if images.dtype == torch.uint8:
        return torch.floor(out + 0.5).clamp_(0, 255).to(torch.uint8)
    return out.to(images.dtype)


# ------------------------------------------------------------------------------------- blur
def _params_list(
    params: TurbulenceParams | Sequence[TurbulenceParams], n: int
) -> list[TurbulenceParams]:
    if isinstance(params, TurbulenceParams):
        return [params] * n
    params = list(params)
    if len(params) != n:
        raise ValueError(f"{len(params)} parameter sets for {n} images")
    return params


def blur_images(
    images: Tensor,
    params: TurbulenceParams | Sequence[TurbulenceParams],
    pixel_scale: tuple[float, float] = (1.0, 1.0),
) -> Tensor:
    """Blur each image with the mean short-exposure PSF of its air (diffraction included).

    The batched torch form of :func:`turbsim.blur_image` (equal to it per image at
    ``pixel_scale`` (1, 1)): symmetric padding by :func:`turbsim.physics.blur.padding_px`, each
    channel's spectrum times ``M_D M_SE`` (:func:`turbsim.physics.blur.transfer_function`), the
    centre.

    Args:
        images: (B, C, H, W) uint8 or floating point, H, W >= 2.
        params: one set for all images or one per image.
        pixel_scale: (s_row, s_col) = stored / native size per axis: the images are a resize
            of frames whose pixels are those of ``params``' camera; the PSF is expressed in
            the images' pixels (its frequencies times 1 / s, its padding times s).

    Returns:
        (B, C, H, W), dtype and device of ``images`` (uint8 rounded to nearest and clipped).
    """
    if images.ndim != 4 or min(images.shape[-2:]) < 2:
        raise ValueError(f"images must be (B, C, H, W) with H, W >= 2, got {tuple(images.shape)}")
    b, _, h, w = images.shape
    per_image = _params_list(params, b)
    scale = (float(pixel_scale[0]), float(pixel_scale[1]))
    work = torch.float64 if images.dtype == torch.float64 else torch.float32
    out = torch.empty(images.shape, dtype=work, device=images.device)
    groups: dict[TurbulenceParams, list[int]] = {}
    for i, p in enumerate(per_image):
        groups.setdefault(p, []).append(i)
    for p, everyone in groups.items():
        pad = _blur.padding_px(p)
        if scale != (1.0, 1.0):
            pad = max(2, math.ceil(pad * max(scale)))
        pad = min(pad, max(h, w))
        rows = scipy.fft.next_fast_len(h + 2 * pad, real=True)
        cols = scipy.fft.next_fast_len(w + 2 * pad, real=True)
        ri = torch.as_tensor(np.pad(np.arange(h), (pad, rows - h - pad), mode="symmetric"))
        ci = torch.as_tensor(np.pad(np.arange(w), (pad, cols - w - pad), mode="symmetric"))
        ri, ci = ri.to(images.device), ci.to(images.device)
        transfer = torch.from_numpy(np.array(_blur.transfer_function(p, rows, cols, scale)))
        transfer = transfer.to(images.device, work)
        step = _chunk(images.device, images.shape[1] * rows * cols * 8, len(everyone))
        for start in range(0, len(everyone), step):
            index = torch.as_tensor(everyone[start : start + step], device=images.device)
            planes = images.index_select(0, index).to(work)[:, :, ri][..., ci]
            filtered = torch.fft.irfft2(torch.fft.rfft2(planes) * transfer, s=(rows, cols))
            out[index] = filtered[..., pad : pad + h, pad : pad + w]
    if images.dtype == torch.uint8:
        return torch.round(out).clamp_(0, 255).to(torch.uint8)
    return out.to(images.dtype)


# ------------------------------------------------------------------------------ the module
def _as_recipe(recipe: Any) -> tuple[Recipe | None, TurbulenceParams | None]:
    if isinstance(recipe, TurbulenceParams):
        return None, recipe
    if isinstance(recipe, Recipe):
        return recipe, None
    if isinstance(recipe, Mapping):  # a resolved recipe, e.g. a manifest's "recipe"
        try:
            return Recipe(dict(recipe)), None
        except (KeyError, TypeError, ValueError) as error:
            raise RecipeError(f"not a resolved turbsim recipe ({error})", "recipe") from None
    if isinstance(recipe, (str, os.PathLike)):
        return resolve_recipe(recipe), None
    raise TypeError(
        "recipe must be a shipped recipe name, a TOML path, a turbsim.recipe.Recipe, a resolved "
        f"recipe dict or a TurbulenceParams; got {type(recipe).__name__}"
    )


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are one device when 0 is the current one."""
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    current = torch.cuda.current_device()
    return (a.index if a.index is not None else current) == (
        b.index if b.index is not None else current
    )


def _size(value: Any, what: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be (H, W), got {value!r}") from None
    if h < 2 or w < 2:
        raise ValueError(f"{what} must be at least 2x2 px, got {h}x{w}")
    return h, w


class RandomTurbulence(nn.Module):
    """Distort a batch of images with fresh turbulence: one physics draw and one field each.

    Args:
        recipe: a shipped recipe name (``"bmvc2020"``), a TOML path, a
            :class:`turbsim.recipe.Recipe`, a resolved recipe dict (a manifest's ``recipe``),
            or a :class:`~turbsim.physics.params.TurbulenceParams` (fixed physics, ensemble
            normalisation, clamped border, no blur). From a recipe: the physics (ranges drawn
            per image as ``turbsim generate`` does, height and aperture rounded to the 1 % log
            grid of rho), ``normalize``, ``border`` and ``blur``; its size, shard and storage
            keys play no part (``native_size`` says the scale).
        native_size: (H, W) [px] of the frames the images are a resize of (the camera's
            pixels: as ``turbsim generate --size`` from frames of that size); None: the
            images are at native size. See the module docstring for the approximation.
        device: where the distortion is computed; None: on the images' device. Results are
            returned on the images' device either way.
        render: with ``native_size``: ``"native"`` (default) renders each field at the native
            size and area-averages it; ``"stored"`` renders directly at the images' size with
            :func:`turbsim.field.stored_scale_filter`, the same Gaussian law (its covariance is
            the area-averaged native one) at (native / image size)^2 times fewer pixels
            (integer ratios only; with ``per-field`` normalisation each component is rescaled
            to the stored field's expected std instead of the native field's sample std).

    ``forward(images, generator=None) -> (distorted, flow)``: images (B, C, H, W) uint8 or
    float in [0, 1]; distorted has their dtype and device; flow float32 (B, 2, H, W) [px]
    ([:, 0] row, [:, 1] column; the warp samples at p + F(p)), at the images' size (with
    ``native_size``: the area-averaged field, in the images' pixels). ``generator``: a
    ``torch.Generator`` (the batch's draws come from it in order) or a sequence of B of them
    (each image's draws from its own: the result of one image then does not depend on the
    others); None: torch's default generator. The same seeds give the same outputs on the same
    device.
    """

    def __init__(
        self,
        recipe: Any,
        native_size: tuple[int, int] | None = None,
        device: torch.device | str | None = None,
        render: str = "native",
    ) -> None:
        super().__init__()
        if render not in RENDERS:
            raise ValueError(f"render must be one of {', '.join(RENDERS)}, got {render!r}")
        self.render = render
        self.recipe, self.params = _as_recipe(recipe)
        if self.recipe is not None and self.recipe.is_fixed_physics():
            self.params = self.recipe.sample_params(np.random.default_rng(0))
        self.native_size = None if native_size is None else _size(native_size, "native_size")
        self.device = None if device is None else torch.device(device)
        source = self.recipe
        self.normalize = "ensemble" if source is None else source.normalize
        self.border = "clamp" if source is None else source.border
        self.blur = "none" if source is None else source.blur

    def extra_repr(self) -> str:
        name = self.recipe.data.get("name") if self.recipe is not None else "fixed params"
        return (
            f"recipe={name!r}, native_size={self.native_size}, render={self.render!r}, "
            f"normalize={self.normalize!r}, border={self.border!r}, blur={self.blur!r}"
        )

    def sample_params(self, generator: torch.Generator | None = None) -> TurbulenceParams:
        """One image's physics: a 62-bit seed from ``generator`` drives the recipe's draw
        (fixed physics draws nothing)."""
        if self.params is not None:
            return self.params
        assert self.recipe is not None
        device = generator.device if generator is not None else None
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())
        return self.recipe.sample_params(np.random.default_rng(seed))

    def sample_fields(
        self,
        count: int,
        image_size: tuple[int, int],
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        device: torch.device | str | None = None,
    ) -> tuple[Tensor, list[TurbulenceParams]]:
        """``count`` fields at the native size, area-averaged to ``image_size``, and their params.

        Draw order: every image's physics first (in order), then every image's noise (in
        order); with a sequence of generators each image draws from its own only.

        Returns:
            (float32 (count, 2, H, W) [px of image_size] on ``device``, the parameters).
        """
        h, w = _size(image_size, "image size")
        native = self.native_size or (h, w)
        if native[0] < h or native[1] < w:
            raise ValueError(
                f"images of {h}x{w} px are larger than native_size {native[0]}x{native[1]}: "
                "the images must be a resize (down) of the native frames"
            )
        gens = list(generator) if isinstance(generator, Sequence) else [generator] * count
        if len(gens) != count:
            raise ValueError(f"{len(gens)} generators for {count} images")
        device = torch.device(device) if device is not None else torch.device("cpu")
        params = [self.sample_params(g) for g in gens]
        out = torch.empty((count, 2, h, w), dtype=torch.float32, device=device)
        grid = native if self.render == "native" else (h, w)  # where the noise lives
        if grid != native and (native[0] % h or native[1] % w):
            raise ValueError(
                f"render='stored' needs native_size {native[0]}x{native[1]} to be an integer "
                f"multiple of the image size {h}x{w}"
            )
        chunk = _chunk(device, 2 * 2 * grid[0] * (grid[1] + 1) * 8, count)
        noise, spec = self._workspace(chunk, grid, device)
        pending: list[int] = []
        for i, g in enumerate(gens):
            if pending and (
                len(pending) == chunk or params[i].shape_key() != params[pending[0]].shape_key()
            ):
                self._render(pending, params, native, noise, spec, out)
                pending.clear()
            slot = noise[len(pending)]
            if g is None or _same_device(g.device, device):
                slot.normal_(generator=g)
            else:  # a generator elsewhere: draw there, then move
                slot.copy_(torch.randn(slot.shape, generator=g, device=g.device))
            pending.append(i)
        if pending:
            self._render(pending, params, native, noise, spec, out)
        return out, params

    def _workspace(
        self, chunk: int, native: tuple[int, int], device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """Noise (chunk, 2, W + 1, 2H, 2) float32 and spectrum buffers, reused across calls
        (a fresh allocation of this size costs as much as filling it, in page faults)."""
        nh, nw = native
        key = (chunk, nh, nw, str(device))
        if getattr(self, "_buffers_key", None) != key:
            shape = (chunk, 2, nw + 1, 2 * nh, 2)
            self._buffers = (
                torch.empty(shape, dtype=torch.float32, device=device),
                torch.empty(shape, dtype=torch.float32, device=device),
            )
            self._buffers_key = key
        return self._buffers

    def _render(
        self,
        index: list[int],
        params: list[TurbulenceParams],
        native: tuple[int, int],
        noise: Tensor,
        spec: Tensor,
        out: Tensor,
    ) -> None:
        n, size = len(index), tuple(out.shape[-2:])
        gain = torch.ones(2, device=out.device)
        if self.render == "stored" and size != native:
            filt, (g_row, g_col) = stored_scale_filter(params[index[0]], native, size)
            gain = torch.tensor([g_row, g_col], dtype=torch.float32, device=out.device)
        else:
            filt = spectral_filter(params[index[0]], native)
        fields = _render(filt, noise[:n], spec[:n])
        if self.normalize == "per-field":  # float32 std: 4e-8 relative to float64 at 2M px
            std = fields.reshape(n, 2, -1).std(dim=-1, correction=1)
            fields = fields / std[..., None, None]
        sigma = torch.tensor(
            [float(np.float32(sigma_r_px(params[i]))) for i in index], device=out.device
        )
        fields = fields * (sigma.view(-1, 1, 1, 1) * gain.view(1, 2, 1, 1))
        out[torch.as_tensor(index, device=out.device)] = area_resize_fields(fields, size)

    def forward(
        self,
        images: Tensor,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(distorted, flow) of ``images``; see the class docstring."""
        if images.ndim != 4:
            raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise TypeError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
        home = images.device
        device = self.device or home
        b, _, h, w = images.shape
        flow, params = self.sample_fields(b, (h, w), generator, device)
        x = images.to(device)
        step = _chunk(device, x.shape[1] * h * w * 24, b)  # float copies + grid per image
        distorted = torch.cat(
            [warp(x[i : i + step], flow[i : i + step], self.border) for i in range(0, b, step)]
        )
        if self.blur != "none":
            native = self.native_size or (h, w)
            distorted = blur_images(distorted, params, (h / native[0], w / native[1]))
        return distorted.to(home), flow.to(home)
