"""R + S with and without spatial feedback (feedbackseg/models/feedback.py): the fast inference
loop and training steps against a literal transcription of SPEC 2.4, precision and memory
layouts, the restore-seg and ERFNet steps."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from model_helpers import C, batch, randomise_bn, tiny_restorer
from torch import nn

from feedbackseg.models import (
    ERFNet,
    FeedbackOutput,
    FeedbackSegmenter,
    RestoreSegmenter,
    build_model,
    erfnet_train_step,
    feedback_train_step,
    predict_logits,
    restore_seg_train_step,
)


# --------------------------------------------------------------- the loop of SPEC 2.4
def tiny_feedback_model(seed: int = 0, num_classes: int = C, **kwargs) -> FeedbackSegmenter:
    torch.manual_seed(seed)
    return FeedbackSegmenter(tiny_restorer(num_classes, **kwargs), ERFNet(num_classes))


def literal_inference(model: FeedbackSegmenter, distorted: torch.Tensor, iterations: int):
    """SPEC 2.4 as written (the original's validation loop), pre-loop passes included."""
    r, s = model.restorer, model.segmenter
    restored = r(distorted)
    logits = s(restored).detach()
    prev_logits = logits
    outputs = []
    for _ in range(iterations):
        restored = r(distorted, logits - prev_logits, restored.detach())
        logits_t = s(restored.detach())
        outputs.append((logits_t, restored))
        prev_logits, logits = logits, logits_t.detach()
    return outputs


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_fast_inference_loop_equals_literal_loop(gen: torch.Generator, iterations: int) -> None:
    # A large feedback scale makes the feedback visible (and the comparison sensitive to it).
    model = tiny_feedback_model(feedback_scale=0.5, max_flow_px=2.0).eval()
    randomise_bn(model, gen)  # the feedback block's BN makes trans_block(0) != 0 in eval mode
    distorted, _, _ = batch(gen)
    with torch.no_grad():
        fast = model(distorted, iterations=iterations)
        literal = literal_inference(model, distorted, iterations)
        plain = model.restorer(distorted)
    assert isinstance(fast, FeedbackOutput)
    assert len(fast.logits) == len(fast.restored) == len(fast.flows) == iterations
    for t, (logits, restored) in enumerate(literal):
        torch.testing.assert_close(fast.logits[t], logits, rtol=0, atol=1e-6)
        torch.testing.assert_close(fast.restored[t], restored, rtol=0, atol=1e-6)
    # The feedback moved the restoration (by ~3e-4 here), far more than the tolerance above.
    assert (fast.restored[-1] - plain).abs().max() > 5e-5
    torch.testing.assert_close(predict_logits(model, distorted, iterations), fast.logits[-1])


def literal_train_step(model, distorted, clean, label, opt_r, opt_s, seg_loss, iterations):
    """A straight transcription of SPEC 2.4 / the original main.py, pre-loop passes and all."""
    r, s = model.restorer, model.segmenter
    restored = r(distorted)  # no feedback
    logits = s(restored)
    tminus, tplus = logits.detach(), logits.detach()
    outputs, l1s = [], []
    for _ in range(iterations):
        opt_s.zero_grad()
        opt_r.zero_grad()
        restored = r(distorted, tplus - tminus, restored.detach())
        loss = F.l1_loss(restored, clean)
        loss.backward()
        opt_r.step()
        opt_s.zero_grad()
        opt_r.zero_grad()
        logits = s(restored.detach())
        outputs.append(logits)
        l1s.append(loss.item())
        tminus, tplus = tplus, logits.detach()
    loss = sum(seg_loss(o, label, t) for t, o in enumerate(outputs, start=1))
    loss.backward()
    opt_s.step()
    return {"loss_seg": loss.item(), "loss_l1": sum(l1s) / len(l1s), "loss_l1_last": l1s[-1]}


def toy_seg_loss(logits: torch.Tensor, label: torch.Tensor, t: int) -> torch.Tensor:
    """Cross-entropy whose weight depends on t, so that a wrong t would show."""
    return (1.0 + 0.1 * t) * F.cross_entropy(logits, label, ignore_index=255)


def optimisers(model: nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    opt_r = torch.optim.Adam(model.restorer.parameters(), 2e-4, (0.9, 0.999))
    opt_s = torch.optim.Adam(model.segmenter.parameters(), 5e-4, weight_decay=2e-4)
    return opt_r, opt_s


def run_both(gen, iterations: int, dropout: bool):
    """One fast and one literal step from the same weights and the same random stream."""
    base = tiny_feedback_model().train()
    if not dropout:
        for m in base.modules():
            if isinstance(m, nn.Dropout2d):
                m.p = 0.0
    data = batch(gen)
    results = []
    for step in (feedback_train_step, literal_train_step):
        model = copy.deepcopy(base)
        opt_r, opt_s = optimisers(model)
        torch.manual_seed(7)  # the dropout masks
        losses = step(model, *data, opt_r, opt_s, toy_seg_loss, iterations=iterations)
        results.append((model, losses))
    return results


def params_and_buffers(model: nn.Module) -> tuple[dict, dict]:
    params = {k: v.detach() for k, v in model.named_parameters()}
    stats = {k: v for k, v in model.named_buffers() if "running" in k}
    return params, stats


def test_fast_train_step_equals_literal_loop(gen: torch.Generator) -> None:
    """T = 3 with dropout on: the fast step runs the same forward passes in the same order (the
    pre-loop ones without autograd), so losses, updated weights, BN running statistics and the
    dropout random stream all agree."""
    (fast, fast_losses), (literal, literal_losses) = run_both(gen, 3, dropout=True)
    assert fast_losses.keys() == {"loss_seg", "loss_l1", "loss_l1_last"}
    for key, value in literal_losses.items():
        assert fast_losses[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
    fast_params, fast_stats = params_and_buffers(fast)
    literal_params, literal_stats = params_and_buffers(literal)
    torch.testing.assert_close(fast_params, literal_params)
    torch.testing.assert_close(fast_stats, literal_stats)
    start, _ = params_and_buffers(tiny_feedback_model())
    for name in (
        "restorer.last.weight",
        "restorer.trans_block.main.4.weight",
        "segmenter.decoder.output_conv.weight",
    ):
        assert not torch.allclose(fast_params[name], start[name]), name  # both networks stepped


def test_fast_train_step_single_iteration_skips_the_pre_loop(gen: torch.Generator) -> None:
    """T = 1: the pre-loop passes are skipped (their output only meets a zero delta). Losses and
    weights agree with the literal loop (dropout off: the skipped S pass would draw masks); the
    BN running statistics do not, since the skipped passes would have updated them."""
    (fast, fast_losses), (literal, literal_losses) = run_both(gen, 1, dropout=False)
    for key, value in literal_losses.items():
        assert fast_losses[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
    fast_params, fast_stats = params_and_buffers(fast)
    literal_params, literal_stats = params_and_buffers(literal)
    torch.testing.assert_close(fast_params, literal_params)
    differing = [k for k in fast_stats if not torch.allclose(fast_stats[k], literal_stats[k])]
    assert any(k.startswith("restorer.down_path") for k in differing)
    assert any(k.startswith("segmenter.") for k in differing)
    assert not any(k.startswith("restorer.trans_block") for k in differing)


def test_train_step_with_grad_scaler_matches_plain_step(gen: torch.Generator) -> None:
    """A GradScaler scales by powers of two, exactly undone: the same step as without one."""
    data = batch(gen)
    base = tiny_feedback_model()
    results = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**10)):
        model = copy.deepcopy(base).train()
        opt_r, opt_s = optimisers(model)
        torch.manual_seed(3)
        losses = feedback_train_step(model, *data, opt_r, opt_s, toy_seg_loss, scaler=scaler)
        results.append((losses, params_and_buffers(model)[0]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    torch.testing.assert_close(results[0][1], results[1][1])


def _step_variant(base, data, channels_last: bool, autocast_dtype=None, iterations: int = 2):
    model = copy.deepcopy(base).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
        data = tuple(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
                     for x in data)  # fmt: skip
    opt_r, opt_s = optimisers(model)
    torch.manual_seed(3)
    losses = feedback_train_step(model, *data, opt_r, opt_s, toy_seg_loss, iterations=iterations,
                                 autocast_dtype=autocast_dtype)  # fmt: skip
    return model, losses


def test_train_step_in_channels_last_equals_the_contiguous_step(gen: torch.Generator) -> None:
    """Channels-last (NHWC: the CUDA default, --channels-last) runs the same T = 3 step as NCHW,
    dropout on.

    In float64, so that the comparison is tight: in float32 the CPU's NHWC train-mode BatchNorm
    kernel rounds ~30x worse than the NCHW one, and the BatchNorm of this tiny model (16 values
    per channel at 1/8 resolution) amplifies that to ~1e-3 in the losses, which would hide a
    real error."""
    base = tiny_feedback_model().double()
    data = tuple(x.double() if x.is_floating_point() else x for x in batch(gen))
    plain, plain_losses = _step_variant(base, data, channels_last=False, iterations=3)
    nhwc, nhwc_losses = _step_variant(base, data, channels_last=True, iterations=3)
    assert nhwc_losses == pytest.approx(plain_losses, rel=1e-6)
    for (name, p), q in zip(plain.named_parameters(), nhwc.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-6, msg=name)
    for (name, b), c in zip(plain.named_buffers(), nhwc.buffers(), strict=True):
        torch.testing.assert_close(c, b, rtol=1e-9, atol=1e-9, msg=name)


def test_channels_last_forward_runs_in_nhwc_and_agrees(gen: torch.Generator) -> None:
    """float32 inference: the NHWC model keeps the format end to end (so oneDNN / cuDNN get
    NHWC kernels) and agrees with NCHW to float32 rounding (eval-mode BatchNorm)."""
    model = tiny_feedback_model().eval()
    x = batch(gen)[0]
    with torch.no_grad():
        plain = model(x, iterations=2)
        model.to(memory_format=torch.channels_last)
        nhwc = model(x.contiguous(memory_format=torch.channels_last), iterations=2)
    assert (
        model.restorer.down_path[0].block[0].weight.is_contiguous(memory_format=torch.channels_last)
    )
    for t in (nhwc.flows[-1], nhwc.logits[-1]):  # (grid_sample returns NCHW images)
        assert t.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(plain.logits + plain.restored, nhwc.logits + nhwc.restored, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_train_step_under_bfloat16_autocast_stays_near_float32(gen: torch.Generator) -> None:
    """CPU mixed precision (``--amp`` on the CPU): finite, and the losses of one step within
    bfloat16's precision (8 significant bits, relative step 2**-8) of the float32 step."""
    base, data = tiny_feedback_model(), batch(gen)
    _, fp32 = _step_variant(base, data, channels_last=False)
    model, bf16 = _step_variant(base, data, channels_last=True, autocast_dtype=torch.bfloat16)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    for key in fp32:
        assert bf16[key] == pytest.approx(fp32[key], rel=4 * 2.0**-8), key
    assert bf16 != fp32  # autocast really ran in bfloat16


def test_train_step_rejects_bad_iterations(gen: torch.Generator) -> None:
    model = tiny_feedback_model()
    opt_r, opt_s = optimisers(model)
    with pytest.raises(ValueError, match="iterations"):
        feedback_train_step(model, *batch(gen), opt_r, opt_s, toy_seg_loss, iterations=0)


def test_restore_seg_step_equals_manual_transcription(gen: torch.Generator) -> None:
    torch.manual_seed(1)
    base = RestoreSegmenter(tiny_restorer(feedback=False), ERFNet(C)).train()
    data = distorted, clean, label = batch(gen)
    fast = copy.deepcopy(base)
    opt_r, opt_s = optimisers(fast)
    torch.manual_seed(5)
    losses = restore_seg_train_step(fast, *data, opt_r, opt_s, toy_seg_loss)

    manual = copy.deepcopy(base)
    opt_r, opt_s = optimisers(manual)
    torch.manual_seed(5)
    restored = manual.restorer(distorted)
    l1 = F.l1_loss(restored, clean)
    l1.backward()
    opt_r.step()
    seg = toy_seg_loss(manual.segmenter(restored.detach()), label, 1)
    opt_s.zero_grad()
    seg.backward()
    opt_s.step()
    assert losses == pytest.approx(
        {"loss_seg": seg.item(), "loss_l1": l1.item(), "loss_l1_last": l1.item()}, rel=1e-6
    )
    torch.testing.assert_close(params_and_buffers(fast)[0], params_and_buffers(manual)[0])


def test_erfnet_step_trains_the_segmenter_only(gen: torch.Generator) -> None:
    torch.manual_seed(2)
    model = ERFNet(C).train()
    start = copy.deepcopy(model.state_dict())
    opt_s = torch.optim.Adam(model.parameters(), 5e-4)
    distorted, clean, label = batch(gen)
    losses = erfnet_train_step(model, distorted, None, label, None, opt_s, toy_seg_loss)
    assert losses["loss_l1"] == losses["loss_l1_last"] == 0.0
    assert losses["loss_seg"] > 0
    assert not torch.equal(model.decoder.output_conv.weight, start["decoder.output_conv.weight"])
    with pytest.raises(ValueError, match="opt_r must be None"):
        erfnet_train_step(model, distorted, clean, label, opt_s, opt_s, toy_seg_loss)


def test_feedback_segmenter_checks_its_parts() -> None:
    with pytest.raises(ValueError, match="feedback=True"):
        FeedbackSegmenter(tiny_restorer(feedback=False), ERFNet(C))
    with pytest.raises(ValueError, match="classes"):
        FeedbackSegmenter(tiny_restorer(num_classes=C), ERFNet(C + 1))


def test_restore_seg_model_outputs(gen: torch.Generator) -> None:
    model = build_model("restore-seg", num_classes=C, small=True).eval()
    distorted, _, _ = batch(gen)
    with torch.no_grad():
        out = model(distorted)
    assert len(out.logits) == 1 and out.logits[0].shape == (2, C, 16, 32)
    assert out.flows[0].shape == (2, 2, 16, 32)
    torch.testing.assert_close(predict_logits(model, distorted), out.logits[0])
