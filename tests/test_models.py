"""The networks (ERFNet, the U-Net restorer, the feedback block), the feedback loop and the
training steps, against the original's numbers and a literal transcription of SPEC 2.4."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from feedbackseg.models import (
    MODES,
    TRAIN_STEPS,
    ERFNet,
    FeedbackOutput,
    FeedbackSegmenter,
    Restoration,
    Restorer,
    RestoreSegmenter,
    build_model,
    erfnet_train_step,
    feedback_train_step,
    infer,
    iterations_run,
    model_parts,
    predict_logits,
    restore_seg_train_step,
)
from feedbackseg.models.restorer import feedback_feature

C = 5  # an odd class count for the small models


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny_restorer(num_classes: int = C, feedback: bool = True, **kwargs) -> Restorer:
    kwargs = {"base_width": 4, "depth": 3, **kwargs}
    return Restorer(num_classes=num_classes, feedback=feedback, **kwargs)


def randomise_bn(module: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BN affine parameters and running statistics (eval-mode outputs use them)."""
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            n = bn.num_features
            bn.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
            bn.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            with torch.no_grad():
                bn.weight.copy_(0.5 + torch.rand(n, generator=generator))
                bn.bias.copy_(0.1 * torch.randn(n, generator=generator))


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors gain nothing from threads, and on shared, busy cores OpenMP threads spin
    against each other (10x slower); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seeded_torch() -> None:
    """Initial weights drawn from torch's global generator do not depend on the test order."""
    torch.manual_seed(1234)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(20201130)


def batch(gen: torch.Generator, b: int = 2, h: int = 16, w: int = 32, classes: int = C):
    distorted = torch.rand(b, 3, h, w, generator=gen)
    clean = torch.rand(b, 3, h, w, generator=gen)
    label = torch.randint(0, classes, (b, h, w), generator=gen)
    label[:, 0, :3] = 255
    return distorted, clean, label


# ----------------------------------------------------------------------------- ERFNet
def test_erfnet_parameter_count_matches_spec() -> None:
    with torch.device("meta"):
        net = ERFNet(num_classes=20)
        with_head = ERFNet(num_classes=20, encoder_head=True)
    assert n_params(net) == 2_064_256
    assert n_params(net.encoder) == 1_874_044
    assert n_params(net.decoder) == 190_212
    # Eromera's encoder-only head (1x1 conv 128 -> 20) is outside the SPEC's count.
    assert n_params(with_head) - n_params(net) == 128 * 20 + 20


def test_erfnet_layout_and_key_names() -> None:
    with torch.device("meta"):
        net = ERFNet(num_classes=20, encoder_head=True)
    keys = set(net.state_dict())
    for key in [
        "encoder.initial_block.conv.weight",
        "encoder.initial_block.bn.running_var",
        "encoder.layers.0.conv.bias",
        "encoder.layers.1.conv3x1_1.weight",
        "encoder.layers.6.conv.weight",
        "encoder.layers.14.conv1x3_2.weight",
        "encoder.layers.14.bn2.running_mean",
        "encoder.output_conv.weight",
        "decoder.layers.0.conv.weight",
        "decoder.layers.5.bn1.weight",
        "decoder.output_conv.bias",
    ]:
        assert key in keys, key
    assert not any("trans_block" in k for k in keys)
    layers = net.encoder.layers
    assert [layers[i].conv3x1_2.dilation[0] for i in range(7, 15)] == [2, 4, 8, 16] * 2
    assert [layers[i].conv1x3_2.dilation[1] for i in range(7, 15)] == [2, 4, 8, 16] * 2
    assert [layers[i].dropout.p for i in range(1, 6)] == [0.03] * 5
    assert [layers[i].dropout.p for i in range(7, 15)] == [0.3] * 8
    assert all(m.eps == 1e-3 for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    out = net.decoder.output_conv
    assert (out.kernel_size, out.stride, out.in_channels, out.out_channels) == (
        (2, 2),
        (2, 2),
        16,
        20,
    )


def test_erfnet_logits_at_input_resolution_and_features(gen: torch.Generator) -> None:
    net = ERFNet(num_classes=C, encoder_head=True).eval()
    x = torch.rand(2, 3, 24, 40, generator=gen)
    with torch.no_grad():
        logits = net(x)
        features = net.forward_features(x)
        head = net.forward_encoder_logits(x)
    assert logits.shape == (2, C, 24, 40) and torch.isfinite(logits).all()
    assert features.shape == (2, 128, 3, 5)
    assert head.shape == (2, C, 3, 5)
    torch.testing.assert_close(net.forward_head(features), logits, rtol=0, atol=0)


@pytest.mark.parametrize("size", [(20, 32), (16, 36), (17, 17)])
def test_erfnet_refuses_sizes_not_divisible_by_8(size: tuple[int, int]) -> None:
    net = ERFNet(num_classes=C)
    with pytest.raises(ValueError, match=rf"divisible by 8.*{size[0]}x{size[1]}"):
        net(torch.zeros(1, 3, *size))


def test_every_erfnet_parameter_gets_a_gradient(gen: torch.Generator) -> None:
    # 136 px: at 1/8 resolution (17 px) even the dilation-16 taps reach image content.
    net = ERFNet(num_classes=C, encoder_head=True).train()
    x = torch.rand(2, 3, 136, 136, generator=gen)
    logits = net(x)
    head = net.forward_encoder_logits(x)
    weights = torch.randn(logits.shape, generator=gen)
    ((logits * weights).sum() + head.square().sum()).backward()
    assert torch.isfinite(logits).all()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# ---------------------------------------------------------------------------- Restorer
def test_restorer_parameter_count_matches_spec() -> None:
    with torch.device("meta"):
        plain = Restorer(base_width=64, depth=5, num_classes=20, feedback=False)
        full = Restorer(base_width=64, depth=5, num_classes=20, feedback=True)
    assert n_params(plain) == 31_043_586
    assert round(n_params(plain) / 1e6, 1) == 31.0
    assert n_params(full) - n_params(plain) == 588_612
    assert n_params(full.trans_block) == 588_612
    main = full.trans_block.main
    assert [type(m).__name__ for m in main] == [
        "AvgPool2d",
        "Conv2d",
        "BatchNorm2d",
        "ReLU",
        "Conv2d",
        "BatchNorm2d",
        "AvgPool2d",
    ]
    assert (main[0].kernel_size, main[6].kernel_size) == (4, 4)
    assert (main[1].in_channels, main[4].out_channels) == (60, 1024)


def test_restorer_key_names_follow_pytorch_unet() -> None:
    with torch.device("meta"):
        net = Restorer(base_width=8, depth=4, num_classes=3)
    keys = set(net.state_dict())
    for key in [
        "down_path.0.block.0.weight",
        "down_path.0.block.2.running_mean",
        "down_path.3.block.3.weight",
        "down_path.3.block.5.bias",
        "up_path.0.up.weight",
        "up_path.2.conv_block.block.5.weight",
        "last.weight",
        "last.bias",
        "trans_block.main.1.weight",
        "trans_block.main.5.running_var",
    ]:
        assert key in keys, key
    assert net.down_path[3].block[0].out_channels == 64
    assert net.up_path[0].up.in_channels == 64 and net.up_path[0].up.out_channels == 32
    assert net.last.in_channels == 8 and net.last.out_channels == 2


@pytest.mark.parametrize("depth", [3, 4, 5])
def test_every_restorer_parameter_gets_a_gradient(gen: torch.Generator, depth: int) -> None:
    net = tiny_restorer(depth=depth, max_flow_px=2.0).train()
    distorted, _, _ = batch(gen, h=32, w=48)
    delta = torch.randn(2, C, 32, 48, generator=gen)
    prev = torch.rand(2, 3, 32, 48, generator=gen)
    restored, flow = net(distorted, delta, prev, return_flow=True)
    assert restored.shape == distorted.shape and flow.shape == (2, 2, 32, 48)
    assert torch.isfinite(restored).all() and torch.isfinite(flow).all()
    weights = torch.randn(restored.shape, generator=gen)
    (restored * weights).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(("depth", "size"), [(5, (24, 32)), (5, (32, 40)), (3, (18, 16))])
def test_restorer_refuses_sizes_not_divisible(depth: int, size: tuple[int, int]) -> None:
    net = tiny_restorer(depth=depth)
    stride = 2 ** (depth - 1)
    with pytest.raises(ValueError, match=rf"divisible by {stride}.*{size[0]}x{size[1]}"):
        net(torch.zeros(1, 3, *size))


def test_restorer_feedback_arguments_are_checked(gen: torch.Generator) -> None:
    distorted, _, _ = batch(gen)
    delta = torch.zeros(2, C, 16, 32)
    net = tiny_restorer()
    with pytest.raises(ValueError, match="both delta and prev"):
        net(distorted, delta=delta)
    with pytest.raises(ValueError, match="both delta and prev"):
        net(distorted, prev=distorted)
    with pytest.raises(ValueError, match="delta must have shape"):
        net(distorted, torch.zeros(2, C + 1, 16, 32), distorted)
    with pytest.raises(ValueError, match="feedback=False"):
        tiny_restorer(feedback=False)(distorted, delta, distorted)
    assert tiny_restorer(feedback=False).trans_block is None


@pytest.mark.parametrize("bound", [10.0, 2.5])
def test_flow_is_bounded_by_max_flow_px(gen: torch.Generator, bound: float) -> None:
    torch.manual_seed(0)
    net = tiny_restorer(max_flow_px=bound).eval()
    distorted, _, _ = batch(gen)
    with torch.no_grad():
        net.last.weight.mul_(1e3)  # drive the tanh into saturation
        flow = net.predict_flow(distorted)
        assert flow.abs().max() <= bound
        net.last.weight.zero_()
        net.last.bias.copy_(torch.tensor([1e3, -1e3]))
        flow = net.predict_flow(distorted)
    assert torch.equal(flow[:, 0], torch.full_like(flow[:, 0], bound))
    assert torch.equal(flow[:, 1], torch.full_like(flow[:, 1], -bound))


def test_zero_flow_restores_the_input_unchanged(gen: torch.Generator) -> None:
    net = tiny_restorer().eval()
    with torch.no_grad():
        net.last.weight.zero_()
        net.last.bias.zero_()
        distorted, _, _ = batch(gen)
        delta = torch.randn(2, C, 16, 32, generator=gen)
        restored, flow = net(distorted, delta, distorted, return_flow=True)
    assert torch.equal(flow, torch.zeros_like(flow))
    # grid_sample normalises coordinates to [-1, 1] and back: float32 round-off only.
    torch.testing.assert_close(restored, distorted, rtol=0, atol=1e-5)


def test_constant_flow_moves_content_per_the_warp_convention() -> None:
    """last = bias only: flow = max_flow * tanh(bias); (0, +atanh(0.3)) -> 3 px to the left."""
    net = tiny_restorer().eval()
    image = torch.zeros(1, 3, 16, 32)
    image[0, :, 8, 10] = 1.0
    with torch.no_grad():
        net.last.weight.zero_()
        net.last.bias.copy_(torch.tensor([0.0, float(torch.atanh(torch.tensor(0.3)))]))
        restored, flow = net(image, return_flow=True)
    torch.testing.assert_close(flow[0, 1], torch.full((16, 32), 3.0))
    assert restored[0, 0].argmax().item() == 8 * 32 + 7
    assert restored[0, 0, 8, 7] == pytest.approx(1.0, abs=1e-5)


def test_feedback_feature_channel_order(gen: torch.Generator) -> None:
    delta = torch.randn(2, C, 4, 8, generator=gen)
    prev = torch.rand(2, 3, 4, 8, generator=gen)
    feature = feedback_feature(delta, prev)
    assert feature.shape == (2, 3 * C, 4, 8)
    for k in range(3):
        for c in range(C):
            torch.testing.assert_close(feature[:, k * C + c], delta[:, c] * prev[:, k])


def test_feedback_changes_the_restoration(gen: torch.Generator) -> None:
    net = tiny_restorer(feedback_scale=1.0).eval()
    randomise_bn(net, gen)
    distorted, _, _ = batch(gen)
    delta = torch.randn(2, C, 16, 32, generator=gen)
    with torch.no_grad():
        plain = net.predict_flow(distorted)
        with_feedback = net.predict_flow(distorted, delta, distorted)
    assert not torch.allclose(plain, with_feedback)


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
