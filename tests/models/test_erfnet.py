"""ERFNet, the segmenter S (feedbackseg/models/erfnet.py): the original's parameter count and
layout, logits at input resolution, refused sizes, gradients."""

from __future__ import annotations

import pytest
import torch
from model_helpers import C, n_params
from torch import nn

from feedbackseg.models import ERFNet


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
