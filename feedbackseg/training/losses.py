"""Segmentation losses of the feedback method: focal term, iteration focal loss (iFL), CB-iFL.

SPEC section 3, read off Rai et al., BMVC 2020. For logits ``z`` (B, C, H, W) and target ``y``
(B, H, W), ``log p = log_softmax(z)`` over the class axis and ``p_t = p[y]``:

- focal term per pixel: ``-(1 - p_t)^gamma * log p_t`` (Lin et al., ICCV 2017), with ``p_t`` in
  the modulating factor treated as a constant (detached), as the original code does; so the
  gradient with respect to the logits is ``(1 - p_t)^gamma * (p - onehot(y))``;
- iFL: the focal term with ``gamma`` growing with the feedback iteration ``t``
  (:func:`iteration_gammas`: 0, 0.1, 0.2, ...), summed over iterations;
- CB-iFL: per-pixel class weight ``w[y]`` from the effective number of samples (Cui et al.,
  "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019, eq. 3 and section 4:
  ``w_c = (1 - beta) / (1 - beta^{n_c})``), loss per image ``sum(w * focal) / sum(w)`` over
  its valid pixels, mean over the batch, times ``alpha``.

Two label layouts are supported: 19 classes with 255 ignored (the default), and the original's
20 classes where class 19 is a void class with weight 0 (targets may contain 19; with unit
weights pass ``ignore_index=19`` to drop it instead).

With ``gamma = 0`` and unit weights the loss is exactly the cross-entropy averaged per image
(per pixel when every image has the same number of valid pixels); the focal term is computed
from ``torch.nn.functional.cross_entropy(reduction="none")`` so the two agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from turbsim.shards.schema import IGNORE_LABEL, NUM_CLASSES

__all__ = [
    "BMVC2020_CLASS_WEIGHTS",
    "ERFNET_CLASS_WEIGHTS",
    "REDUCTIONS",
    "CBiFLLoss",
    "FocalLoss",
    "IFLLoss",
    "cb_ifl",
    "class_balanced_weights",
    "count_pixels",
    "focal_loss",
    "ifl",
    "iteration_gammas",
]

#: Valid ``reduction`` values of :func:`focal_loss`.
REDUCTIONS: tuple[str, ...] = ("per_image", "mean", "sum", "none")


def class_balanced_weights(
    pixel_counts: Tensor | np.ndarray | Sequence[float], beta: float = 0.9999
) -> Tensor:
    """Class weights from the effective number of samples (Cui et al., CVPR 2019, eq. 3).

    ``w_c = (1 - beta) / (1 - beta^{n_c})`` exactly as in SPEC 3, with NO renormalisation (Cui
    et al.'s released code rescales the weights to sum to the number of classes; the BMVC 2020
    formula does not, and CB-iFL divides by ``sum(w)`` per image, so a global scale would cancel
    anyway). Computed in float64 as ``(1 - beta) / -expm1(n_c * log(beta))`` so that large
    counts and beta close to 1 keep full precision. A class with ``n_c = 0`` (never seen) gets
    weight 0 instead of ``inf``: it cannot occur in the targets it was counted from, and the
    void class of the 20-class layout is weighted 0 this way. ``n_c`` need not be an integer
    (the BMVC 2020 constants use ``n_c = 100 / e_c``).

    Args:
        pixel_counts: (C,) number of pixels (or effective count) per class, >= 0, finite.
        beta: Hyper-parameter in [0, 1); 0 gives unit weights for every seen class, values close
            to 1 approach inverse-frequency weighting.

    Returns:
        (C,) float32 weights, ``1 - beta <= w_c <= 1`` for ``n_c >= 1``.

    Raises:
        ValueError: ``beta`` outside [0, 1), counts not 1-D, negative or non-finite.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    if isinstance(pixel_counts, Tensor):
        pixel_counts = pixel_counts.detach().cpu().numpy()
    counts = np.asarray(pixel_counts, dtype=np.float64)
    if counts.ndim != 1:
        raise ValueError(
            f"pixel_counts must be 1-D (one count per class), got shape {counts.shape}"
        )
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError(f"pixel_counts must be finite and >= 0, got {counts.tolist()}")
    seen = counts > 0
    weights = np.zeros_like(counts)
    if beta == 0.0:
        weights[seen] = 1.0
    else:
        weights[seen] = (1.0 - beta) / -np.expm1(counts[seen] * np.log(beta))
    return torch.from_numpy(weights).float()


#: ERFNet's fixed class weights e_c (Romera et al. 2017, train/main.py, the encoder+decoder
#: setting), in the 20-class layout: trainIds 0..18, then the void class 19 with weight 0.
ERFNET_CLASS_WEIGHTS: Tensor = torch.tensor(
    [
        2.8149, 6.9850, 3.7890, 9.9428, 9.7702, 9.5110, 10.3113, 10.0264, 4.6323, 9.5608,
        7.8698, 9.5168, 10.3737, 6.6616, 10.2604, 10.2878, 10.2898, 10.4053, 10.1380, 0.0,
    ],
    dtype=torch.float32,
)  # fmt: skip


def _bmvc2020_class_weights() -> Tensor:
    e = ERFNET_CLASS_WEIGHTS[:NUM_CLASSES].double()
    counts = torch.cat([100.0 / e, torch.zeros(1, dtype=torch.float64)])  # void: n = 0 -> w = 0
    return class_balanced_weights(counts, beta=0.9999)


#: The BMVC 2020 CB-iFL weights (``--class-weights bmvc2020``): ``n_c = 100 / e_c`` from
#: :data:`ERFNET_CLASS_WEIGHTS`, ``beta = 0.9999``, 20-class layout with the void class 19 at
#: weight 0. For the 19-class layout use ``BMVC2020_CLASS_WEIGHTS[:19]``. Values run from about
#: 0.028 (road) to 0.104 (motorcycle), i.e. roughly ``e_c / 100``.
BMVC2020_CLASS_WEIGHTS: Tensor = _bmvc2020_class_weights()


def iteration_gammas(iterations: int, step: float = 0.1) -> list[float]:
    """Focal exponents of the iFL schedule: ``gamma_t = t * step`` for ``t = 0 .. T-1``.

    Args:
        iterations: Number of feedback iterations T >= 1.
        step: Increment of ``gamma`` per iteration (0.1 in the paper).

    Returns:
        ``[0.0, step, 2 step, ...]`` of length T, rounded to 12 decimals (so 3 x 0.1 is 0.3).
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    return [round(t * step, 12) for t in range(iterations)]


def count_pixels(target: Tensor, num_classes: int, ignore_index: int = IGNORE_LABEL) -> Tensor:
    """Pixels per class in a label tensor, for :func:`class_balanced_weights`.

    Args:
        target: Integer labels of any shape, values in [0, num_classes) or ``ignore_index``.
        num_classes: Number of classes C.
        ignore_index: Label value that is not counted.

    Returns:
        (C,) int64 counts on ``target``'s device.

    Raises:
        ValueError: a label outside [0, C) that is not ``ignore_index``.
    """
    target = target.reshape(-1).long()
    valid = target != ignore_index
    _check_labels(target, valid, num_classes, ignore_index)
    return torch.bincount(target[valid], minlength=num_classes)


def _check_labels(target: Tensor, valid: Tensor, num_classes: int, ignore_index: int) -> None:
    bad = valid & ((target < 0) | (target >= num_classes))
    if bool(bad.any()):
        values = torch.unique(target[bad])[:8].tolist()
        raise ValueError(
            f"target holds labels outside [0, {num_classes}) that are not "
            f"ignore_index={ignore_index}: {values} (wrong label layout or num_classes?)"
        )


def focal_loss(
    logits: Tensor,
    target: Tensor,
    gamma: float = 0.0,
    class_weights: Tensor | None = None,
    ignore_index: int = IGNORE_LABEL,
    reduction: str = "per_image",
) -> Tensor:
    """Class-weighted focal loss with a detached modulating factor (SPEC 3).

    Per pixel ``l = w[y] * -(1 - p_t)^gamma * log p_t`` with ``p_t`` detached in the factor;
    pixels labelled ``ignore_index`` have ``w = 0``. Computed in float32 (or float64 for float64
    logits) whatever the logits' dtype, also under autocast.

    Args:
        logits: (B, C, H, W) raw scores (any spatial dims after C work too).
        target: (B, H, W) integer labels in [0, C) or ``ignore_index``.
        gamma: Focal exponent >= 0; 0 gives the (weighted) cross-entropy exactly.
        class_weights: (C,) non-negative weights, or None for unit weights.
        ignore_index: Label value that contributes nothing.
        reduction: How pixels are combined:

            - ``"per_image"`` (default, SPEC 3): per image ``sum(w * focal) / sum(w)`` over its
              pixels, then the mean over the batch. An image whose weight sum is 0 (all pixels
              ignored or zero-weight) contributes 0 but still counts in the batch mean.
            - ``"mean"``: ``sum(w * focal) / sum(w)`` over the whole batch (what
              ``F.cross_entropy(weight=w, reduction="mean")`` does); 0 if the sum is 0.
            - ``"sum"``: ``sum(w * focal)``.
            - ``"none"``: the (B, H, W) map ``w * focal`` (0 on ignored pixels).

    Returns:
        Scalar loss (float32/float64), or the (B, H, W) map for ``reduction="none"``.

    Raises:
        ValueError: shapes do not match, a label is outside [0, C) and not ``ignore_index``,
            bad ``class_weights`` or ``reduction``, or ``gamma < 0``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if logits.ndim < 2 or target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits shape "
            f"{tuple(logits.shape)}: expected (B, H, W) for logits (B, C, H, W)"
        )
    if target.is_floating_point() or target.is_complex():
        raise ValueError(f"target must hold integer labels, got dtype {target.dtype}")
    num_classes = logits.shape[1]
    target = target.long()
    valid = target != ignore_index
    _check_labels(target, valid, num_classes, ignore_index)

    work = torch.float64 if logits.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=logits.device.type, enabled=False):
        # -log p_t per pixel (0 where ignored), fused log_softmax + gather.
        nll = F.cross_entropy(logits.to(work), target, ignore_index=ignore_index, reduction="none")
        if gamma != 0:
            p_t = torch.exp(-nll.detach())
            focal = (1.0 - p_t).clamp_min(0.0).pow(gamma) * nll
        else:
            focal = nll
        if class_weights is None:
            weight = valid.to(work)
        else:
            class_weights = _check_weights(class_weights, num_classes).to(logits.device, work)
            weight = class_weights[torch.where(valid, target, 0)] * valid

        weighted = weight * focal
        if reduction == "none":
            return weighted
        if reduction == "sum":
            return weighted.sum()
        if reduction == "mean":
            return _safe_ratio(weighted.sum(), weight.sum())
        spatial = tuple(range(1, weighted.ndim))
        return _safe_ratio(weighted.sum(spatial), weight.sum(spatial)).mean()


def _safe_ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` where ``den > 0``, else 0, without NaN in values or gradients."""
    positive = den > 0
    return torch.where(positive, num / torch.where(positive, den, torch.ones_like(den)), 0.0)


def _check_weights(class_weights: Tensor, num_classes: int) -> Tensor:
    class_weights = torch.as_tensor(class_weights)
    if class_weights.shape != (num_classes,):
        raise ValueError(
            f"class_weights must have shape ({num_classes},) for {num_classes}-class logits, "
            f"got {tuple(class_weights.shape)}"
        )
    if not bool(torch.isfinite(class_weights).all()) or bool((class_weights < 0).any()):
        raise ValueError(f"class_weights must be finite and >= 0, got {class_weights.tolist()}")
    return class_weights


def ifl(
    logits: Tensor,
    target: Tensor,
    gamma: float,
    alpha: float = 1.0,
    ignore_index: int = IGNORE_LABEL,
) -> Tensor:
    """Iteration focal loss of one feedback iteration, unit class weights (SPEC 3).

    ``alpha * mean_b [ sum_valid focal / n_valid ]``. Sum it over iterations with the gammas of
    :func:`iteration_gammas` (or use :class:`IFLLoss` on the list of logits).

    Args:
        logits: (B, C, H, W) raw scores.
        target: (B, H, W) labels in [0, C) or ``ignore_index``.
        gamma: Focal exponent of this iteration (``t * 0.1`` in the paper).
        alpha: Overall scale.
        ignore_index: Ignored label (255; 19 to drop the void class of the 20-class layout).

    Returns:
        Scalar loss.
    """
    return alpha * focal_loss(logits, target, gamma, None, ignore_index, "per_image")


def cb_ifl(
    logits: Tensor,
    target: Tensor,
    class_weights: Tensor,
    gamma: float,
    alpha: float = 1.0,
    ignore_index: int = IGNORE_LABEL,
) -> Tensor:
    """Class-balanced iteration focal loss of one feedback iteration (SPEC 3).

    Per image ``sum(w[y] * focal) / sum(w[y])`` over its valid pixels, mean over the batch,
    times ``alpha``; an image whose valid weight sum is 0 contributes 0 (no NaN).

    Args:
        logits: (B, C, H, W) raw scores.
        target: (B, H, W) labels in [0, C) or ``ignore_index``.
        class_weights: (C,) weights, e.g. :func:`class_balanced_weights` of the training pixel
            counts or :data:`BMVC2020_CLASS_WEIGHTS` (20 classes) / ``[:19]`` (19 classes).
        gamma: Focal exponent of this iteration.
        alpha: Overall scale.
        ignore_index: Ignored label.

    Returns:
        Scalar loss.
    """
    return alpha * focal_loss(logits, target, gamma, class_weights, ignore_index, "per_image")


class FocalLoss(nn.Module):
    """:func:`focal_loss` as a module; ``class_weights`` is a buffer (moves with ``.to()``).

    Args:
        gamma: Focal exponent.
        class_weights: (C,) weights or None.
        ignore_index: Ignored label.
        reduction: One of :data:`REDUCTIONS`.
    """

    def __init__(
        self,
        gamma: float = 0.0,
        class_weights: Tensor | None = None,
        ignore_index: int = IGNORE_LABEL,
        reduction: str = "per_image",
    ) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.gamma = float(gamma)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.register_buffer(
            "class_weights", None if class_weights is None else torch.as_tensor(class_weights)
        )

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of (B, C, H, W) logits against (B, H, W) labels."""
        return focal_loss(
            logits, target, self.gamma, self.class_weights, self.ignore_index, self.reduction
        )


class CBiFLLoss(nn.Module):
    """CB-iFL (SPEC 3) as a module: ``forward(logits, target, iteration)`` or over iterations.

    Called with one (B, C, H, W) tensor and the 1-based feedback ``iteration`` t it returns
    :func:`cb_ifl` at ``gamma = (t - 1) * gamma_step`` (the schedule of
    :func:`iteration_gammas`); this is the ``seg_loss(logits, label, t)`` signature that
    ``feedbackseg.models.feedback`` steps call (t = 1 for the modes without feedback, i.e. the
    class-weighted cross-entropy). Called with a sequence of T tensors (the logits of
    iterations 1..T) it returns the sum over them. ``class_weights=None`` gives unit weights,
    i.e. iFL (see :class:`IFLLoss`); ``gamma_step=0`` gives class-weighted cross-entropy at
    every iteration.

    Args:
        class_weights: (C,) weights (a buffer), or None for unit weights.
        gamma_step: Increment of gamma per iteration (0.1 in the paper).
        alpha: Overall scale.
        ignore_index: Ignored label.
    """

    def __init__(
        self,
        class_weights: Tensor | None = None,
        gamma_step: float = 0.1,
        alpha: float = 1.0,
        ignore_index: int = IGNORE_LABEL,
    ) -> None:
        super().__init__()
        self.gamma_step = float(gamma_step)
        self.alpha = float(alpha)
        self.ignore_index = ignore_index
        self.register_buffer(
            "class_weights",
            None if class_weights is None else torch.as_tensor(class_weights).float(),
        )

    def gamma(self, iteration: int) -> float:
        """Focal exponent of the 1-based feedback iteration ``iteration``."""
        return iteration_gammas(iteration, self.gamma_step)[-1]

    def forward(
        self, logits: Tensor | Sequence[Tensor], target: Tensor, iteration: int = 1
    ) -> Tensor:
        """Loss of iteration ``iteration``'s logits, or the sum over a list of iterations 1..T.

        Args:
            logits: (B, C, H, W) logits of one iteration, or a sequence of them.
            target: (B, H, W) labels.
            iteration: 1-based iteration t of a single tensor (ignored for a sequence).

        Returns:
            Scalar loss.
        """
        if isinstance(logits, Tensor):
            return self._one(logits, target, self.gamma(iteration))
        logits = list(logits)
        if not logits:
            raise ValueError("logits sequence is empty")
        gammas = iteration_gammas(len(logits), self.gamma_step)
        terms = [self._one(z, target, g) for z, g in zip(logits, gammas, strict=True)]
        return torch.stack(terms).sum()

    def _one(self, logits: Tensor, target: Tensor, gamma: float) -> Tensor:
        return self.alpha * focal_loss(
            logits, target, gamma, self.class_weights, self.ignore_index, "per_image"
        )


class IFLLoss(CBiFLLoss):
    """iFL (unit class weights) as a module; see :class:`CBiFLLoss` for the calling forms.

    Args:
        gamma_step: Increment of gamma per iteration (0.1 in the paper).
        alpha: Overall scale.
        ignore_index: Ignored label.
    """

    def __init__(
        self, gamma_step: float = 0.1, alpha: float = 1.0, ignore_index: int = IGNORE_LABEL
    ):
        super().__init__(None, gamma_step, alpha, ignore_index)
