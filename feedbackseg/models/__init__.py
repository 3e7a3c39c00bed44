"""Networks, one module per family, and the model registry.

- :mod:`.erfnet`: the segmenter S (ERFNet, Romera et al. 2017);
- :mod:`.restorer`: the restorer R (U-Net flow predictor + warp) and the feedback block;
- :mod:`.feedback`: R + S with and without spatial feedback, and the training steps.

:func:`build_model` is the one factory of the network of each training mode (SPEC-feedbackseg
section 2.4); the trainer, :func:`feedbackseg.runs.checkpoints.model_from_checkpoint` and the
benchmarks build through it. :func:`model_parts` names the restorer and segmenter of a model
(what the optimisers and the pretrained-encoder import take).

One inference signature for the three model kinds, :func:`infer`::

    infer(model, distorted, iterations=T) -> FeedbackOutput
    # distorted (B, 3, H, W) in [0, 1]; out.logits: iterations_run(model, T) tensors
    # (B, C, H, W), the last one the prediction; out.restored (B, 3, H, W) and out.flows
    # (B, 2, H, W) [px] in the same order, empty for ERFNet

:class:`FeedbackSegmenter` and :class:`RestoreSegmenter` have that very signature as their
``forward(distorted, iterations)`` (the restore-seg baseline runs once whatever T); ERFNet keeps
``forward(x) -> logits (B, C, H, W)``, as it is also the segmenter S inside the other two and
what the training steps call.
"""

from __future__ import annotations

from torch import nn

from feedbackseg.config import FLOW_INITS, MODES, RESTORER_BN
from feedbackseg.models.erfnet import ERFNet
from feedbackseg.models.feedback import (
    ITERATIONS,
    TRAIN_STEPS,
    FeedbackOutput,
    FeedbackSegmenter,
    NonFiniteError,
    Restoration,
    RestoreSegmenter,
    erfnet_train_step,
    feedback_train_step,
    flow_epe,
    infer,
    iterations_run,
    predict_logits,
    restore_seg_train_step,
    restore_train_step,
)
from feedbackseg.models.restorer import Restorer
from feedbackseg.modes import mode_of

#: Restorer widths: the original (64 .. 1024 channels, ~31.0 M parameters) and a narrow one
#: for CPU work (8 .. 128 channels).
RESTORER_CONFIGS = {
    False: {"base_width": 64, "depth": 5},
    True: {"base_width": 8, "depth": 5},
}


def build_model(
    mode: str,
    num_classes: int = 19,
    small: bool = False,
    flow_init: str = "paper",
    restorer_bn: str = "running",
) -> nn.Module:
    """A freshly initialised network for a training mode.

    The segmenter is built (and its weights drawn from torch's global RNG) before the restorer;
    in the ``restore`` mode too (and then dropped), so that one seed starts R from the same
    weights in every mode.

    Args:
        mode: "erfnet" (:class:`ERFNet`), "restore-seg" (:class:`RestoreSegmenter`),
            "feedback" (:class:`FeedbackSegmenter`) or "restore" (:class:`Restoration`, R
            alone); see :data:`feedbackseg.modes.MODE_TABLE`.
        num_classes: output classes C (19; 20 for the original's layout with a void class).
        small: a narrow restorer (``base_width=8``) for CPU work; ERFNet is always the original.
        flow_init: :data:`FLOW_INITS` ("zero": :meth:`Restorer.zero_flow_head`).
        restorer_bn: :data:`RESTORER_BN` ("batch": R's BatchNorm in batch statistics at
            inference, as the original).

    Raises:
        ValueError: an unknown mode, flow_init or restorer_bn.
    """
    kind = mode_of(mode)  # ValueError for an unknown mode
    if flow_init not in FLOW_INITS or restorer_bn not in RESTORER_BN:
        raise ValueError(f"unknown flow_init {flow_init!r} or restorer_bn {restorer_bn!r}")
    segmenter = ERFNet(num_classes)
    if not kind.restorer:
        return segmenter
    restorer = Restorer(
        num_classes=num_classes,
        feedback=kind.feedback,
        batch_stats_at_inference=restorer_bn == "batch",
        **RESTORER_CONFIGS[small],
    )
    if flow_init == "zero":
        restorer.zero_flow_head()
    if kind.feedback:
        return FeedbackSegmenter(restorer, segmenter)
    if not kind.segmenter:
        return Restoration(restorer)
    return RestoreSegmenter(restorer, segmenter)


def model_parts(model: nn.Module) -> tuple[Restorer | None, nn.Module | None]:
    """(restorer R, segmenter S) of a model of :func:`build_model`; R is None for ERFNet alone
    (or any plain segmenter), S None for the restore mode."""
    if isinstance(model, (FeedbackSegmenter, RestoreSegmenter)):
        return model.restorer, model.segmenter
    if isinstance(model, Restoration):
        return model.restorer, None
    return None, model


__all__ = [
    "ITERATIONS",
    "MODES",
    "FLOW_INITS",
    "RESTORER_BN",
    "RESTORER_CONFIGS",
    "TRAIN_STEPS",
    "ERFNet",
    "FeedbackOutput",
    "FeedbackSegmenter",
    "NonFiniteError",
    "Restoration",
    "RestoreSegmenter",
    "Restorer",
    "build_model",
    "erfnet_train_step",
    "feedback_train_step",
    "flow_epe",
    "infer",
    "iterations_run",
    "model_parts",
    "predict_logits",
    "restore_seg_train_step",
    "restore_train_step",
]
