"""Restoration + segmentation with spatial feedback (Rai et al., BMVC 2020; SPEC section 2.4),
the restore-then-segment baseline, and one optimisation step of each mode.

The iterative loop of SPEC 2.4, per batch (R = restorer, S = segmenter, T iterations)::

    restored_0 = R(x)                              # pre-loop pass, no feedback
    logits_0   = S(restored_0); prev = logits_0    # detached
    for t in 1..T:
        restored_t = R(x, delta = logits_{t-1} - prev, prev_image = restored_{t-1})
        L1(restored_t, clean) -> step R            # R learns only from L1
        logits_t = S(restored_t.detach())
        prev, logits_{t-1} <- logits_{t-1}, logits_t
    sum_t seg_loss(logits_t, label, t) -> step S

What the pre-loop passes contribute: at t = 1 the delta is exactly zero, so ``restored_0`` enters
only multiplied by zero; but ``logits_0`` is the "previous logits" of t = 2, where the delta is
``logits_1 - logits_0``. So for T >= 2 the pre-loop passes carry information and cannot be
dropped; for T = 1 they can. The fast implementations here therefore

- run the pre-loop passes without autograd (the original builds, and throws away, a graph
  through R and S there), and skip them entirely when T = 1 (feeding delta = 0, prev = 0);
- build autograd graphs only for the R pass that the L1 loss steps and for the S passes whose
  losses are summed (S sees ``restored.detach()``, as in the original).

For T >= 2 this is the same computation as the literal loop, in train mode too (the same
forward passes run, in the same order, so BatchNorm running statistics and the dropout random
stream agree). For T = 1 in train mode the skipped passes would have updated BatchNorm running
statistics and drawn S's dropout masks, so those (and only those) differ.
tests/models/test_feedback.py checks both claims against a literal transcription.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from feedbackseg.models.restorer import Restorer

#: seg_loss(logits (B, C, H, W) float32, label (B, H, W) int64, t) -> scalar loss; t is the
#: 1-based feedback iteration (1 for the modes without feedback).
SegLoss = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]

#: Feedback iterations T of the original.
ITERATIONS = 3


class NonFiniteError(FloatingPointError):
    """A training step met a non-finite flow or loss and stopped before its backward pass.

    Checked before every ``backward``: PyTorch's CPU ``grid_sample`` backward crashes the process
    (a segmentation fault) on a non-finite sampling grid, and a non-finite loss would write NaN
    into the weights. The message names what is not finite, e.g. ``"the restorer's flow is not
    finite (iteration 2)"``; the optimisers have not stepped on it.
    """


def _require_finite(where: str, **tensors: torch.Tensor) -> None:
    """Raise :class:`NonFiniteError` unless every element of ``tensors`` is finite.

    One device synchronisation for all of them. Names in the message: ``flow`` is written as
    "the restorer's flow", the others as given (``loss_l1``, ``loss_seg``).
    """
    flags = torch.stack([torch.isfinite(v.detach()).all() for v in tensors.values()]).tolist()
    bad = [name for name, ok in zip(tensors, flags, strict=True) if not ok]
    if bad:
        names = " and ".join("the restorer's flow" if n == "flow" else n for n in bad)
        raise NonFiniteError(f"{names} {'is' if len(bad) == 1 else 'are'} not finite ({where})")


@dataclass
class FeedbackOutput:
    """Per-iteration outputs of a restore + segment model, one entry per iteration t = 1..T.

    ``logits[-1]`` is the prediction. Shapes: logits (B, C, H, W); restored (B, 3, H, W);
    flows (B, 2, H, W) [px], channel 0 = row, 1 = column displacement.
    """

    logits: list[torch.Tensor] = field(default_factory=list)
    restored: list[torch.Tensor] = field(default_factory=list)
    flows: list[torch.Tensor] = field(default_factory=list)

    def append(self, logits: torch.Tensor, restored: torch.Tensor, flow: torch.Tensor) -> None:
        self.logits.append(logits)
        self.restored.append(restored)
        self.flows.append(flow)


def _check_iterations(iterations: int) -> None:
    if int(iterations) != iterations or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")


class FeedbackSegmenter(nn.Module):
    """R + S with spatial feedback (SPEC 2.4), for inference.

    Args:
        restorer: a :class:`Restorer` built with ``feedback=True``.
        segmenter: the segmentation network S (an :class:`ERFNet`), with
            ``segmenter.num_classes == restorer.num_classes``.
    """

    def __init__(self, restorer: Restorer, segmenter: nn.Module) -> None:
        super().__init__()
        if not restorer.has_feedback:
            raise ValueError("FeedbackSegmenter needs a Restorer built with feedback=True")
        classes = getattr(segmenter, "num_classes", restorer.num_classes)
        if classes != restorer.num_classes:
            raise ValueError(
                f"segmenter has {classes} classes but the restorer's feedback block expects "
                f"{restorer.num_classes}"
            )
        self.restorer = restorer
        self.segmenter = segmenter

    @property
    def num_classes(self) -> int:
        return self.restorer.num_classes

    def forward(self, distorted: torch.Tensor, iterations: int = ITERATIONS) -> FeedbackOutput:
        """Run the feedback loop (no optimiser steps) on distorted images (B, 3, H, W).

        The feedback signals are detached, as in training. For T = 1 the pre-loop passes are
        skipped (their output enters only multiplied by a zero delta); see the module docstring.
        """
        _check_iterations(iterations)
        r, s = self.restorer, self.segmenter
        out = FeedbackOutput()
        if iterations == 1:
            delta, prev = _zero_feedback(distorted, self.num_classes)
            restored, flow = r(distorted, delta, prev, return_flow=True)
            out.append(s(restored), restored, flow)
            return out
        with torch.no_grad():
            restored = r(distorted)
            logits = s(restored)
        prev_logits = logits
        for _ in range(iterations):
            restored, flow = r(distorted, logits - prev_logits, restored, return_flow=True)
            logits_t = s(restored)
            out.append(logits_t, restored, flow)
            restored = restored.detach()
            prev_logits, logits = logits, logits_t.detach()
        return out


class Restoration(nn.Module):
    """R alone (the ``restore`` mode): distorted -> restored, trained on L1 only.

    ``forward`` returns a :class:`FeedbackOutput` with one restored image and flow and no
    logits; :func:`infer` accepts it like the other two kinds.
    """

    def __init__(self, restorer: Restorer) -> None:
        super().__init__()
        if restorer.has_feedback:
            raise ValueError("the restore mode takes a Restorer built with feedback=False")
        self.restorer = restorer

    @property
    def num_classes(self) -> int:
        return self.restorer.num_classes

    def forward(self, distorted: torch.Tensor, iterations: int = 1) -> FeedbackOutput:
        """Restore distorted images (B, 3, H, W) once (``iterations`` is not used)."""
        restored, flow = self.restorer(distorted, return_flow=True)
        return FeedbackOutput(restored=[restored], flows=[flow])


class RestoreSegmenter(nn.Module):
    """R then S without feedback (the ``restore-seg`` baseline, Rai et al. WACV 2020).

    ``forward`` returns a :class:`FeedbackOutput` with one iteration, like
    :class:`FeedbackSegmenter`.
    """

    def __init__(self, restorer: Restorer, segmenter: nn.Module) -> None:
        super().__init__()
        self.restorer = restorer
        self.segmenter = segmenter

    @property
    def num_classes(self) -> int:
        return self.segmenter.num_classes

    def forward(self, distorted: torch.Tensor, iterations: int = 1) -> FeedbackOutput:
        """Restore then segment distorted images (B, 3, H, W) once.

        ``iterations`` is accepted for the common signature of :func:`infer` and not used:
        without feedback there is one pass whatever T.
        """
        restored, flow = self.restorer(distorted, return_flow=True)
        out = FeedbackOutput()
        out.append(self.segmenter(restored), restored, flow)
        return out


def infer(
    model: nn.Module, distorted: torch.Tensor, iterations: int = ITERATIONS
) -> FeedbackOutput:
    """Run any of the three model kinds on distorted images: the one inference signature.

    Args:
        model: the bare network (not a DDP wrapper): a :class:`FeedbackSegmenter` (T
            iterations), a :class:`RestoreSegmenter` (one) or a plain segmenter such as
            :class:`ERFNet` (one; any module mapping (B, 3, H, W) to logits (B, C, H, W)).
        distorted: network input (B, 3, H, W) in [0, 1].
        iterations: feedback iterations T (feedback models only; the others run once).

    Returns:
        A :class:`FeedbackOutput` with :func:`iterations_run` entries of ``logits`` (B, C, H, W),
        the last being the prediction; ``restored`` and ``flows`` in the same order, empty for a
        plain segmenter.
    """
    if isinstance(model, (FeedbackSegmenter, RestoreSegmenter, Restoration)):
        return model(distorted, iterations=iterations)
    return FeedbackOutput(logits=[model(distorted)])


def iterations_run(model: nn.Module, iterations: int = ITERATIONS) -> int:
    """How many per-iteration outputs :func:`infer` gives: T for a feedback model, else 1."""
    return int(iterations) if isinstance(model, FeedbackSegmenter) else 1


def predict_logits(
    model: nn.Module, distorted: torch.Tensor, iterations: int = ITERATIONS
) -> torch.Tensor:
    """The prediction logits (B, C, H, W) of any of the three model kinds (last iteration)."""
    return infer(model, distorted, iterations).logits[-1]


def _zero_feedback(distorted: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """delta = 0 (B, C, H, W) and prev = 0 (B, K, H, W): the exact t = 1 feedback of SPEC 2.4
    (the delta is exactly zero there, and prev enters only multiplied by it)."""
    batch, _, height, width = distorted.shape
    delta = distorted.new_zeros((batch, num_classes, height, width))
    return delta, torch.zeros_like(distorted)


# ------------------------------------------------------------------------------ train steps
def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _backward_and_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None
) -> None:
    """loss.backward() then optimizer.step(), through ``scaler`` when given.

    The scaler is updated after every step: R takes T steps per batch, and a GradScaler allows
    one step per optimizer between updates.
    """
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


def _l1(restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(restored.float(), clean.float())


def flow_epe(flow: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean end-point error [px] between two flows (B, 2, H, W): mean over pixels of the
    length of their difference (float32)."""
    return (flow.float() - target.float()).pow(2).sum(1).add(1e-12).sqrt().mean()


def _restorer_loss(
    restored: torch.Tensor,
    clean: torch.Tensor,
    flow: torch.Tensor,
    flow_target: torch.Tensor | None,
    flow_weight: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(R's loss, its L1 term, its flow term or None): L1(restored, clean), plus
    ``flow_weight * EPE(flow, flow_target)`` with a target (``--flow-loss epe``)."""
    l1 = _l1(restored, clean)
    if flow_target is None:
        return l1, l1, None
    epe = flow_epe(flow, flow_target)
    return l1 + flow_weight * epe, l1, epe


def _losses(
    loss_seg: float, l1_values: list[float], epe_values: list[torch.Tensor | None]
) -> dict[str, float]:
    """The step's record: loss_seg, loss_l1 (mean over R's steps), loss_l1_last, and with a
    flow term loss_flow (its mean)."""
    out = {
        "loss_seg": loss_seg,
        "loss_l1": sum(l1_values) / len(l1_values),
        "loss_l1_last": l1_values[-1],
    }
    epes = [float(e) for e in epe_values if e is not None]
    if epes:
        out["loss_flow"] = sum(epes) / len(epes)
    return out


def feedback_train_step(
    model: FeedbackSegmenter,
    distorted: torch.Tensor,
    clean: torch.Tensor,
    label: torch.Tensor,
    opt_r: torch.optim.Optimizer,
    opt_s: torch.optim.Optimizer,
    seg_loss: SegLoss,
    iterations: int = ITERATIONS,
    autocast_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    flow_target: torch.Tensor | None = None,
    flow_weight: float = 0.0,
) -> dict[str, float]:
    """One training step of the spatial-feedback loop (SPEC 2.4), fast form.

    R takes one optimiser step on L1(restored_t, clean) in each iteration; S one step on
    ``sum_t seg_loss(logits_t, label, t)`` after the loop. Modes (train/eval) are the caller's.
    See the module docstring for what is skipped and why the result equals the literal loop.

    Args:
        model: the feedback model; ``opt_r`` holds ``model.restorer``'s parameters and
            ``opt_s`` ``model.segmenter``'s.
        distorted: network input (B, 3, H, W) in [0, 1].
        clean: restoration target (B, 3, H, W) in [0, 1].
        label: trainIds (B, H, W) int64 (ignore value as ``seg_loss`` expects).
        seg_loss: see :data:`SegLoss`; called with float32 logits.
        iterations: T >= 1.
        autocast_dtype: run the forward passes under ``torch.autocast`` with this dtype.
        scaler: optional GradScaler (float16 autocast).
        flow_target: (B, 2, H, W) [px], the flow R should output (``--flow-loss epe``: the
            smoothed inverse of the true displacement); None: R learns from L1 alone (the
            paper).
        flow_weight: weight of the EPE term in R's loss [1 / px].

    Returns:
        {"loss_seg": the summed segmentation loss, "loss_l1": mean of the T L1 losses,
        "loss_l1_last": L1 of the last iteration}, and with a flow target "loss_flow" (the
        mean EPE [px] of the T steps).

    Raises:
        NonFiniteError: a non-finite flow or L1 loss (before R's backward) or summed
            segmentation loss (before S's backward); the pending step is not taken.
    """
    _check_iterations(iterations)
    restorer, segmenter = model.restorer, model.segmenter
    autocast = _autocast(distorted.device, autocast_dtype)
    if iterations == 1:
        delta, restored = _zero_feedback(distorted, model.num_classes)
        logits = prev_logits = None
    else:
        with torch.no_grad(), autocast:
            restored = restorer(distorted)
            logits = segmenter(restored)
        prev_logits = logits
    l1_terms, seg_terms, epe_terms = [], [], []
    for t in range(1, iterations + 1):
        if logits is not None:
            delta = logits - prev_logits
        opt_r.zero_grad(set_to_none=True)
        with autocast:
            restored_t, flow = restorer(distorted, delta, restored, return_flow=True)
            loss_r, l1, epe = _restorer_loss(restored_t, clean, flow, flow_target, flow_weight)
        _require_finite(f"iteration {t}", flow=flow, loss_l1=loss_r)
        _backward_and_step(loss_r, opt_r, scaler)
        epe_terms.append(None if epe is None else epe.detach())
        restored = restored_t.detach()
        with autocast:
            logits_t = segmenter(restored)
        seg_terms.append(seg_loss(logits_t.float(), label, t))
        l1_terms.append(l1.detach())
        prev_logits, logits = logits, logits_t.detach()
    loss_seg = torch.stack(seg_terms).sum()
    _require_finite("the segmenter's step", loss_seg=loss_seg)
    opt_s.zero_grad(set_to_none=True)
    _backward_and_step(loss_seg, opt_s, scaler)
    return _losses(float(loss_seg.detach()), torch.stack(l1_terms).tolist(), epe_terms)


def restore_seg_train_step(
    model: RestoreSegmenter,
    distorted: torch.Tensor,
    clean: torch.Tensor,
    label: torch.Tensor,
    opt_r: torch.optim.Optimizer,
    opt_s: torch.optim.Optimizer,
    seg_loss: SegLoss,
    autocast_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    flow_target: torch.Tensor | None = None,
    flow_weight: float = 0.0,
) -> dict[str, float]:
    """One step of the restore-seg baseline: R on L1(R(x), clean), S on seg_loss(S(R(x).detach())).

    Arguments and return value as :func:`feedback_train_step` (T = 1, ``seg_loss`` gets t = 1).
    """
    autocast = _autocast(distorted.device, autocast_dtype)
    restored, l1, epe = _restorer_step(model.restorer, distorted, clean, opt_r, autocast,
                                       scaler, flow_target, flow_weight)  # fmt: skip
    with autocast:
        logits = model.segmenter(restored.detach())
    loss_seg = seg_loss(logits.float(), label, 1)
    _require_finite("the segmenter's step", loss_seg=loss_seg)
    opt_s.zero_grad(set_to_none=True)
    _backward_and_step(loss_seg, opt_s, scaler)
    return _losses(float(loss_seg.detach()), [l1], [epe])


def _restorer_step(
    restorer: nn.Module,
    distorted: torch.Tensor,
    clean: torch.Tensor,
    opt_r: torch.optim.Optimizer,
    autocast: contextlib.AbstractContextManager,
    scaler: torch.amp.GradScaler | None,
    flow_target: torch.Tensor | None,
    flow_weight: float,
) -> tuple[torch.Tensor, float, torch.Tensor | None]:
    """R's one step on its loss: (the restored batch, detached; its L1; the EPE or None)."""
    opt_r.zero_grad(set_to_none=True)
    with autocast:
        restored, flow = restorer(distorted, return_flow=True)
        loss_r, l1, epe = _restorer_loss(restored, clean, flow, flow_target, flow_weight)
    _require_finite("the restorer's step", flow=flow, loss_l1=loss_r)
    _backward_and_step(loss_r, opt_r, scaler)
    return restored.detach(), float(l1.detach()), None if epe is None else epe.detach()


def restore_train_step(
    model: Restoration,
    distorted: torch.Tensor,
    clean: torch.Tensor,
    label: torch.Tensor | None,
    opt_r: torch.optim.Optimizer,
    opt_s: torch.optim.Optimizer | None,
    seg_loss: SegLoss | None,
    autocast_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    flow_target: torch.Tensor | None = None,
    flow_weight: float = 0.0,
) -> dict[str, float]:
    """One step of the ``restore`` mode: R alone on L1(R(x), clean) (+ the flow term).

    ``label``, ``opt_s`` and ``seg_loss`` are unused (the mode has no segmenter); the result's
    ``loss_seg`` is 0.0. Otherwise as :func:`restore_seg_train_step`.
    """
    if opt_s is not None:
        raise ValueError("the restore mode has no segmenter: opt_s must be None")
    autocast = _autocast(distorted.device, autocast_dtype)
    _, l1, epe = _restorer_step(model.restorer, distorted, clean, opt_r, autocast, scaler,
                                flow_target, flow_weight)  # fmt: skip
    return _losses(0.0, [l1], [epe])


def erfnet_train_step(
    model: nn.Module,
    distorted: torch.Tensor,
    clean: torch.Tensor | None,
    label: torch.Tensor,
    opt_r: torch.optim.Optimizer | None,
    opt_s: torch.optim.Optimizer,
    seg_loss: SegLoss,
    autocast_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One step of the ERFNet baseline: S on seg_loss(S(distorted), label, 1).

    ``clean`` and ``opt_r`` are unused (pass None); they keep the three steps' signatures alike.
    Returns the dict of :func:`feedback_train_step` with the L1 entries 0.0.
    """
    if opt_r is not None:
        raise ValueError("the erfnet mode has no restorer: opt_r must be None")
    with _autocast(distorted.device, autocast_dtype):
        logits = model(distorted)
    loss_seg = seg_loss(logits.float(), label, 1)
    _require_finite("the segmenter's step", loss_seg=loss_seg)
    opt_s.zero_grad(set_to_none=True)
    _backward_and_step(loss_seg, opt_s, scaler)
    return {"loss_seg": float(loss_seg.detach()), "loss_l1": 0.0, "loss_l1_last": 0.0}


#: mode -> its training step (``feedback`` takes ``iterations`` too).
TRAIN_STEPS: dict[str, Callable[..., dict[str, float]]] = {
    "erfnet": erfnet_train_step,
    "restore-seg": restore_seg_train_step,
    "feedback": feedback_train_step,
    "restore": restore_train_step,
}
