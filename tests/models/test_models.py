"""The model registry (feedbackseg/models/__init__.py): build_model per mode, the parts of a
model, the one inference signature of the three kinds. The networks themselves: test_erfnet.py,
test_restorer.py, test_feedback.py in this folder."""

from __future__ import annotations

import pytest
import torch
from model_helpers import C, batch, n_params

from feedbackseg.models import (
    MODES,
    TRAIN_STEPS,
    ERFNet,
    FeedbackSegmenter,
    Restoration,
    RestoreSegmenter,
    build_model,
    infer,
    iterations_run,
    model_parts,
    predict_logits,
)


# --------------------------------------------------------------------------- registry
def test_build_model_registry() -> None:
    assert set(MODES) == set(TRAIN_STEPS) == {"erfnet", "restore-seg", "feedback", "restore"}
    with torch.device("meta"):
        erf = build_model("erfnet", num_classes=20)
        plain = build_model("restore-seg", num_classes=20)
        full = build_model("feedback", num_classes=20)
        small = build_model("feedback", num_classes=C, small=True)
        alone = build_model("restore", num_classes=20)
    assert isinstance(alone, Restoration) and n_params(alone) == 31_043_586
    assert isinstance(erf, ERFNet) and n_params(erf) == 2_064_256
    assert isinstance(plain, RestoreSegmenter) and plain.restorer.trans_block is None
    assert isinstance(full, FeedbackSegmenter)
    assert n_params(full.restorer) == 31_043_586 + 588_612
    assert small.restorer.down_path[0].block[0].out_channels == 8
    assert small.restorer.trans_block.main[1].in_channels == 3 * C
    assert n_params(small.segmenter) == n_params(ERFNet(C))
    with pytest.raises(ValueError, match="unknown mode 'unet'"):
        build_model("unet")


def test_modes_have_one_home() -> None:
    import feedbackseg.config as config
    import feedbackseg.models as models

    assert models.MODES is config.MODES


@pytest.mark.parametrize("iterations", [1, 3])
def test_infer_is_one_signature_for_the_three_kinds(gen: torch.Generator, iterations: int) -> None:
    """infer(model, x, T) -> FeedbackOutput: T logits for feedback, one otherwise; restored and
    flows in step with the logits, empty for ERFNet; the last logits are predict_logits'."""
    distorted, _, _ = batch(gen)
    for mode in MODES:
        model = build_model(mode, num_classes=C, small=True).eval()
        if mode == "restore":  # R alone: one restoration, no logits
            out = infer(model, distorted, iterations)
            assert out.logits == [] and len(out.restored) == len(out.flows) == 1
            assert iterations_run(model, iterations) == 1
            continue
        with torch.no_grad():
            out = infer(model, distorted, iterations)
            direct = model(distorted) if mode == "erfnet" else model(distorted, iterations)
        steps = iterations if mode == "feedback" else 1
        assert iterations_run(model, iterations) == steps == len(out.logits), mode
        assert all(z.shape == (2, C, 16, 32) for z in out.logits), mode
        restorer, segmenter = model_parts(model)
        assert isinstance(segmenter, ERFNet)
        if restorer is None:
            assert mode == "erfnet" and out.restored == [] and out.flows == []
            torch.testing.assert_close(out.logits[0], direct, rtol=0, atol=0)
        else:
            assert restorer is model.restorer and segmenter is model.segmenter
            assert len(out.restored) == len(out.flows) == steps
            assert out.restored[-1].shape == distorted.shape
            torch.testing.assert_close(out.logits[-1], direct.logits[-1], rtol=0, atol=0)
        with torch.no_grad():
            torch.testing.assert_close(
                predict_logits(model, distorted, iterations), out.logits[-1], rtol=0, atol=0
            )
