"""The restorer R (feedbackseg/models/restorer.py): the U-Net flow predictor, its parameter count
and key names, the bounded flow and the warp convention, and the feedback block."""

from __future__ import annotations

import pytest
import torch
from model_helpers import C, batch, n_params, randomise_bn, tiny_restorer

from feedbackseg.models import Restorer
from feedbackseg.models.restorer import feedback_feature


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
