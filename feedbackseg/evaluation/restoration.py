"""What the restorer R achieves, measured honestly: PSNR gains and R's flow against a reference.

The reference flow. The shards hold ``distorted(p) = clean(p + F(p))`` and R outputs
``restored(p) = distorted(p + G(p))``, so restoration is perfect where ``G(p) = -F(p + G(p))``:
the inverse displacement (:func:`inverse_flow`, a fixed point). That inverse exists only where
the map ``p -> p + F(p)`` does not fold (:mod:`turbsim.views.folding`): at the stored size of the
CPU study's benchmark F folds at ~37 % of the pixels, and there the fixed point does not converge
(its residual ``|G + F(p + G)|`` stays as large as F). So R's flow is compared with the inverse
of F *smoothed* by a Gaussian of :data:`SMOOTH_SIGMA_PX` (2 px at the evaluated size): the
smoothing removes the fine-scale part of F that folds and that a smooth, bounded flow network
cannot represent anyway, and the smoothed map is invertible almost everywhere (its residual is
reported). The PSNR of the input warped with that smoothed inverse (``psnr_warp_reference``) is
a *reference* for what a good smooth warp gains, not a bound: other flows can do better.

The reference F is the stored flow. Shards written with ``--flow-resample area`` store the
displacement the stored image shows (the native field area-averaged); older shards store the
nearest-resampled native field, which keeps the native roughness: the results say which
(``flow_resample``).

Keys of :func:`restoration_metrics` (PSNR in dB, means of per-image values; flows in px of the
evaluated size):

- ``psnr_restored``, ``psnr_distorted``, ``psnr_gain_db`` (restored minus distorted);
- ``flow_length_px``: mean length of R's flow; with several feedback iterations
  ``feedback_flow_change_px``: mean length of its last flow minus its first;
- with a stored flow: ``flow_epe_px`` and ``flow_epe_zero_px`` (R's flow and a zero flow against
  the fixed-point inverse of F, as before), ``psnr_oracle_flow`` (the input warped with that
  inverse: not a bound either), ``inverse_residual_px`` (mean ``|G + F(p + G)|`` of that
  inverse), ``flow_epe_smooth_px``, ``flow_epe_smooth_zero_px``, ``flow_cosine_smooth`` (mean
  cosine between R's flow and the smoothed inverse, over pixels where both are longer than
  0.05 px), ``psnr_warp_reference``, ``inverse_residual_smooth_px``, ``fold_fraction_stored``
  (of F), ``flow_resample``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from feedbackseg.models.flow import warp

__all__ = [
    "SMOOTH_SIGMA_PX",
    "checkpoint_restoration",
    "format_restoration",
    "gaussian_smooth",
    "inverse_flow",
    "inverse_residual",
    "psnr",
    "restoration_metrics",
    "smoothed_inverse",
]

#: Std of the Gaussian that smooths F before it is inverted [px at the evaluated size].
SMOOTH_SIGMA_PX = 2.0
#: Fixed-point iterations of :func:`inverse_flow`.
INVERSE_ITERATIONS = 20
#: Flows shorter than this [px] have no direction in the cosine.
_MIN_LENGTH_PX = 0.05


def inverse_flow(field: Tensor, iterations: int = INVERSE_ITERATIONS) -> Tensor:
    """The fixed point ``G = -F(p + G)``: the flow that undoes the displacement F.

    Convention (turbsim README "Conventions", :func:`feedbackseg.models.flow.warp`): see the module
    docstring. Iterated from ``G = -F`` with bilinear sampling (clamped border). Where the map
    ``p -> p + F(p)`` is a smooth bijection (a few px of smooth tilt: F's gradient below 1) this
    is a contraction and converges to ~1e-6 px; where the map folds there is no inverse and the
    iteration does not converge: :func:`inverse_residual` says how far from one it stays.

    Args:
        field: F, (B, 2, H, W) [px], (row, col).
        iterations: fixed-point steps.

    Returns:
        G, (B, 2, H, W) float32 [px].
    """
    field = field.float()
    inverse = -field
    for _ in range(iterations):
        inverse = -warp(field, inverse)
    return inverse


def inverse_residual(field: Tensor, inverse: Tensor) -> Tensor:
    """Per-image mean of ``|G(p) + F(p + G(p))|`` [px], (B,): 0 for an exact inverse."""
    return (
        (inverse.float() + warp(field.float(), inverse.float())).pow(2).sum(1).sqrt().mean((1, 2))
    )


def gaussian_smooth(field: Tensor, sigma_px: float = SMOOTH_SIGMA_PX) -> Tensor:
    """Each component of (B, 2, H, W) convolved with a Gaussian of std ``sigma_px`` [px]
    (separable, truncated at 3 sigma, reflective border)."""
    radius = max(1, math.ceil(3 * sigma_px))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=field.device)
    kernel = torch.exp(-0.5 * (x / sigma_px) ** 2)
    kernel = kernel / kernel.sum()
    b, c, h, w = field.shape
    out = field.float().reshape(b * c, 1, h, w)
    pad_h, pad_w = min(radius, h - 1), min(radius, w - 1)
    out = F.pad(out, (pad_w, pad_w, 0, 0), mode="reflect" if pad_w else "replicate")
    out = F.conv2d(out, kernel[radius - pad_w : radius + pad_w + 1].view(1, 1, 1, -1))
    out = F.pad(out, (0, 0, pad_h, pad_h), mode="reflect" if pad_h else "replicate")
    out = F.conv2d(out, kernel[radius - pad_h : radius + pad_h + 1].view(1, 1, -1, 1))
    return out.reshape(b, c, h, w)


def smoothed_inverse(field: Tensor, sigma_px: float = SMOOTH_SIGMA_PX) -> Tensor:
    """:func:`inverse_flow` of F smoothed by :func:`gaussian_smooth` (the reference flow)."""
    return inverse_flow(gaussian_smooth(field, sigma_px))


def psnr(a: Tensor, b: Tensor) -> np.ndarray:
    """Per-image PSNR [dB] of images in [0, 1], (B, 3, H, W) -> (B,)."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return (10.0 * torch.log10(1.0 / mse)).cpu().numpy()


def _length(flow: Tensor) -> Tensor:
    return flow.float().pow(2).sum(1).sqrt()


def _cosine(flow: Tensor, reference: Tensor) -> float:
    """Mean cosine between two flows over pixels where both are longer than 0.05 px."""
    a, b = flow.float(), reference.float()
    la, lb = _length(a), _length(b)
    valid = (la > _MIN_LENGTH_PX) & (lb > _MIN_LENGTH_PX)
    if not bool(valid.any()):
        return float("nan")
    cos = (a * b).sum(1) / (la * lb).clamp_min(1e-12)
    return float(cos[valid].mean())


def _mean(values: list[float]) -> float | None:
    """Mean of the finite values; None when there is none (e.g. a cosine of zero flows)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _fold_fraction(field: Tensor) -> float:
    """Fraction of pixels where p -> p + F(p) folds: det of its Jacobian <= 0 (central
    differences, one-sided at the edges, as numpy.gradient and turbsim.views.folding)."""
    f = field.double()
    drow_dr, drow_dc = torch.gradient(f[:, 0], dim=(1, 2))
    dcol_dr, dcol_dc = torch.gradient(f[:, 1], dim=(1, 2))
    det = (1 + drow_dr) * (1 + dcol_dc) - drow_dc * dcol_dr
    return float((det <= 0).double().mean())


def _flow_entries(x: Tensor, flow: Tensor, field: Tensor, clean: Tensor) -> dict[str, float]:
    """The per-image metrics of R's ``flow`` against the stored displacement ``field``."""
    plain = inverse_flow(field)
    smooth = smoothed_inverse(field)
    return {
        "flow_epe_px": float(_length(flow - plain).mean()),
        "flow_epe_zero_px": float(_length(plain).mean()),
        "psnr_oracle_flow": float(psnr(warp(x, plain).clamp(0, 1), clean).mean()),
        "inverse_residual_px": float(inverse_residual(field, plain).mean()),
        "flow_epe_smooth_px": float(_length(flow - smooth).mean()),
        "flow_epe_smooth_zero_px": float(_length(smooth).mean()),
        "flow_cosine_smooth": _cosine(flow, smooth),
        "psnr_warp_reference": float(psnr(warp(x, smooth).clamp(0, 1), clean).mean()),
        "inverse_residual_smooth_px": float(
            inverse_residual(gaussian_smooth(field), smooth).mean()
        ),
        "fold_fraction_stored": _fold_fraction(field),
    }


@torch.no_grad()
def restoration_metrics(
    model: nn.Module,
    dataset: Any,
    iterations: int = 1,
    limit: int | None = None,
) -> dict[str, Any]:
    """R's restoration on a dataset (see the module docstring for the keys).

    Args:
        model: a network with a restorer (:func:`feedbackseg.models.infer` gives ``restored``
            and ``flows``), in the mode it should be evaluated in.
        dataset: a :class:`feedbackseg.data.dataset.ShardDataset` (no augmentation): ``distorted``,
            ``clean`` and, when it stores one, the flow (``dataset.flow(i)``).
        iterations: feedback iterations T.
        limit: evaluate the first ``limit`` samples only (None: all).

    Returns:
        The means over the samples (floats, ``flow_resample`` a string or None).
    """
    from feedbackseg.models import infer

    device = next(model.parameters()).device
    has_flow = bool(getattr(dataset, "has_flow", False))
    count = len(dataset) if limit is None else min(limit, len(dataset))
    rows: list[dict[str, float]] = []
    for index in range(count):
        item = dataset[index]
        x, clean = item["distorted"][None].to(device), item["clean"][None].to(device)
        out = infer(model, x, iterations)
        flow = out.flows[-1].float()
        row = {
            "psnr_restored": float(psnr(out.restored[-1].clamp(0, 1), clean)[0]),
            "psnr_distorted": float(psnr(x, clean)[0]),
            "flow_length_px": float(_length(flow).mean()),
        }
        if len(out.flows) > 1:
            row["feedback_flow_change_px"] = float(_length(flow - out.flows[0].float()).mean())
        if has_flow:
            field = torch.from_numpy(dataset.flow(index))[None].to(device)
            row.update(_flow_entries(x, flow, field, clean))
        rows.append(row)
    result: dict[str, Any] = {key: _mean([r[key] for r in rows]) for key in rows[0]}
    if rows:
        result["psnr_gain_db"] = result["psnr_restored"] - result["psnr_distorted"]
        result["samples"] = count
    result["flow_resample"] = getattr(dataset, "flow_resample", None) if has_flow else None
    return result


def checkpoint_restoration(
    checkpoint_path: Any,
    shards: Any,
    split: str = "val",
    height: int | None = None,
    iterations: int | None = None,
    device: Any = "auto",
    limit: int | None = None,
) -> dict[str, Any]:
    """:func:`restoration_metrics` of a trainer checkpoint with a restorer on a shard split.

    Args:
        checkpoint_path: ``RUN/best.pt`` of a restore, restore-seg or feedback run.
        shards, split: the shard folder and split.
        height: evaluation height [px]; None: the checkpoint's training height.
        iterations: feedback iterations; None: the checkpoint's.
        device: where to run.
        limit: the first ``limit`` samples only.

    Returns:
        The metrics plus ``split``, ``resolution`` [H, W], ``step`` (of the checkpoint) and
        ``mode``.

    Raises:
        CheckpointError: unreadable checkpoint, or one without a restorer (erfnet).
        EvalError: (key ``height``) images too large for this machine's memory.
    """
    from feedbackseg.data.dataset import ShardDataset
    from feedbackseg.evaluation.inference import (
        check_inference_memory,
        checkpoint_height,
        checkpoint_iterations,
        load_model,
    )
    from feedbackseg.runs.checkpoints import CheckpointError

    model, checkpoint = load_model(checkpoint_path, device)
    if checkpoint["mode"] not in ("restore", "restore-seg", "feedback"):
        raise CheckpointError(f"{checkpoint_path}: a {checkpoint['mode']} model has no restorer")
    height = height or checkpoint_height(checkpoint)
    dataset = ShardDataset(shards, split, height=height)
    try:
        check_inference_memory(model, dataset.image_size, 1, device, height)
        steps = iterations or checkpoint_iterations(checkpoint)
        metrics = restoration_metrics(model, dataset, steps, limit)
    finally:
        dataset.close()
    metrics.update(
        split=split,
        resolution=list(dataset.image_size),
        step=checkpoint.get("step"),
        mode=checkpoint["mode"],
    )
    return metrics


def format_restoration(metrics: dict[str, Any]) -> str:
    """A few lines of :func:`restoration_metrics` for a terminal (what ``fbseg eval`` prints)."""

    def value(key: str, unit: str = "", digits: int = 2) -> str:
        v = metrics.get(key)
        return "n/a" if v is None else f"{v:.{digits}f}{unit}"

    h, w = metrics.get("resolution") or (0, 0)
    lines = [
        f"restoration on {metrics.get('samples', '?')} images of split "
        f"{metrics.get('split')!r} at {h}x{w}: PSNR {value('psnr_restored', ' dB')} (input "
        f"{value('psnr_distorted', ' dB')}, gain {value('psnr_gain_db', ' dB', 3)}); R's flow "
        f"{value('flow_length_px', ' px')} long",
    ]
    if metrics.get("flow_epe_smooth_px") is not None:
        lines.append(
            f"against the inverse of the stored flow ({metrics.get('flow_resample')}) smoothed "
            f"by {SMOOTH_SIGMA_PX:g} px: EPE {value('flow_epe_smooth_px', ' px')} (zero flow "
            f"{value('flow_epe_smooth_zero_px', ' px')}), cosine {value('flow_cosine_smooth')}"
            f"; that warp gives {value('psnr_warp_reference', ' dB')} (a reference, not a "
            f"bound); the stored flow folds at {value('fold_fraction_stored', '', 3)} of the "
            f"pixels, its plain inverse leaves {value('inverse_residual_px', ' px')} of residual"
        )
    return "\n".join(lines) + "\n"
