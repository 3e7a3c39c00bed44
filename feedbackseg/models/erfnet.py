"""ERFNet, the segmentation network S (Romera et al., "ERFNet: Efficient Residual Factorized
ConvNet for Real-time Semantic Segmentation", IEEE T-ITS 2017; SPEC-feedbackseg section 2.1).

The module and parameter names are those of the authors' release (Eromera/erfnet_pytorch,
``train/erfnet.py``), so that ``erfnet_pretrained.pth`` loads after stripping ``module.``:
``encoder.initial_block``, ``encoder.layers.{0..14}``, ``encoder.output_conv``,
``decoder.layers.{0..5}``, ``decoder.output_conv``. The four unused ``trans_block`` modules of the
BMVC 2020 copy are not ported (see :mod:`feedbackseg.runs.checkpoints` for its other key layout).

With ``num_classes=20`` the network holds exactly 2,064,256 parameters: encoder 1,874,044 and
decoder 190,212 (SPEC 2.1). Those numbers do NOT include Eromera's encoder-only head
``encoder.output_conv`` (1x1 conv 128 -> C, 2,580 parameters for C = 20, used only for the
original "encoder mode" prediction): the BMVC 2020 encoder has none, so it is off by default and
``ERFNet(encoder_head=True)`` builds it to hold ``erfnet_pretrained.pth``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Total downsampling factor of the encoder (three stride-2 downsamplers).
ERFNET_STRIDE = 8

#: BatchNorm epsilon of every ERFNet BN layer.
BN_EPS = 1e-3


class Downsampler(nn.Module):
    """concat[conv3x3 stride 2 (in -> out - in), maxpool 2x2] -> BN -> ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels (> in_channels).

    Shapes: (B, in, H, W) -> (B, out, H/2, W/2); H and W must be even.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels - in_channels, 3, stride=2, padding=1, bias=True
        )
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(torch.cat([self.conv(x), self.pool(x)], 1)))


class NonBottleneck1d(nn.Module):
    """The factorised residual block "non-bottleneck-1d" of ERFNet.

    conv3x1 -> ReLU -> conv1x3 -> BN -> ReLU -> conv3x1 (dilation d, 1) -> ReLU ->
    conv1x3 (dilation 1, d) -> BN -> Dropout2d(p) -> ReLU(out + input).

    Args:
        channels: input = output channels.
        dropout: Dropout2d probability (0 disables the layer, as in the original).
        dilation: dilation d of the second pair of convolutions.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, dropout: float, dilation: int) -> None:
        super().__init__()
        d = dilation
        self.conv3x1_1 = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0), bias=True)
        self.conv1x3_1 = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1), bias=True)
        self.bn1 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.conv3x1_2 = nn.Conv2d(
            channels, channels, (3, 1), padding=(d, 0), dilation=(d, 1), bias=True
        )
        self.conv1x3_2 = nn.Conv2d(
            channels, channels, (1, 3), padding=(0, d), dilation=(1, d), bias=True
        )
        self.bn2 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv3x1_1(x))
        out = F.relu(self.bn1(self.conv1x3_1(out)))
        out = F.relu(self.conv3x1_2(out))
        out = self.bn2(self.conv1x3_2(out))
        if self.dropout.p != 0:
            out = self.dropout(out)
        return F.relu(out + x)


class Upsampler(nn.Module):
    """ConvTranspose 3x3 stride 2 (padding 1, output padding 1) -> BN -> ReLU.

    Shapes: (B, in, H, W) -> (B, out, 2H, 2W).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(
            in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=True
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


#: Dilations of the eight 128-channel blocks at 1/8 resolution.
DILATIONS = (2, 4, 8, 16, 2, 4, 8, 16)


class Encoder(nn.Module):
    """ERFNet encoder: 3 -> 128 channels at 1/8 resolution.

    ``layers`` = [Downsampler(16->64), 5 x nb1d(64, 0.03, 1), Downsampler(64->128),
    8 x nb1d(128, 0.3, d) for d in 2,4,8,16,2,4,8,16] after ``initial_block`` =
    Downsampler(3->16).

    Args:
        num_classes: classes of the encoder-only head ``output_conv`` (1x1 conv, 128 -> C), as
            in Eromera's release; None builds no head (the BMVC 2020 and ImageNet encoders have
            none).
    """

    def __init__(self, num_classes: int | None = 19) -> None:
        super().__init__()
        self.initial_block = Downsampler(3, 16)
        layers: list[nn.Module] = [Downsampler(16, 64)]
        layers += [NonBottleneck1d(64, 0.03, 1) for _ in range(5)]
        layers.append(Downsampler(64, 128))
        layers += [NonBottleneck1d(128, 0.3, d) for d in DILATIONS]
        self.layers = nn.ModuleList(layers)
        self.output_conv = (
            nn.Conv2d(128, num_classes, 1, bias=True) if num_classes is not None else None
        )

    def forward(self, x: torch.Tensor, predict: bool = False) -> torch.Tensor:
        """Features (B, 128, H/8, W/8), or with ``predict`` the head's logits (B, C, H/8, W/8)."""
        out = self.initial_block(x)
        for layer in self.layers:
            out = layer(out)
        if predict:
            if self.output_conv is None:
                raise ValueError("this encoder has no prediction head (num_classes=None)")
            out = self.output_conv(out)
        return out


class Decoder(nn.Module):
    """ERFNet decoder: 128 channels at 1/8 resolution -> C logits at full resolution.

    ``layers`` = [Upsampler(128->64), 2 x nb1d(64, 0, 1), Upsampler(64->16), 2 x nb1d(16, 0, 1)],
    then ``output_conv`` = ConvTranspose2d(16 -> C, kernel 2, stride 2).
    """

    def __init__(self, num_classes: int = 19) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [
                Upsampler(128, 64),
                NonBottleneck1d(64, 0.0, 1),
                NonBottleneck1d(64, 0.0, 1),
                Upsampler(64, 16),
                NonBottleneck1d(16, 0.0, 1),
                NonBottleneck1d(16, 0.0, 1),
            ]
        )
        self.output_conv = nn.ConvTranspose2d(
            16, num_classes, 2, stride=2, padding=0, output_padding=0, bias=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.output_conv(x)


def check_divisible(x: torch.Tensor, factor: int, network: str) -> None:
    """Raise ValueError unless ``x`` is (B, C, H, W) with H and W divisible by ``factor``."""
    if x.dim() != 4:
        raise ValueError(f"{network} expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    height, width = x.shape[-2:]
    if height % factor or width % factor:
        raise ValueError(
            f"{network} needs H and W divisible by {factor}, got an input of size "
            f"{height}x{width} (HxW); resize or pad it to a multiple of {factor}"
        )


class ERFNet(nn.Module):
    """ERFNet segmenter: RGB image -> per-pixel class logits at the input resolution.

    Args:
        num_classes: output classes C (19 with ignore index 255 by default; the original used 20,
            19 classes + a void class of weight 0).
        encoder_head: also build the encoder-only head ``encoder.output_conv`` (128 -> C, 1x1)
            of Eromera's release (used only by :meth:`forward_encoder_logits`). Off by default:
            the BMVC 2020 network and the SPEC's parameter count have none.

    Shapes: ``forward``: (B, 3, H, W) -> (B, C, H, W), H and W divisible by 8.
    """

    def __init__(self, num_classes: int = 19, encoder_head: bool = False) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.encoder = Encoder(num_classes if encoder_head else None)
        self.decoder = Decoder(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features (B, 128, H/8, W/8) of images x (B, 3, H, W)."""
        check_divisible(x, ERFNET_STRIDE, "ERFNet")
        return self.encoder(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Decoder: features (B, 128, h, w) -> logits (B, C, 8h, 8w)."""
        return self.decoder(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, C, H, W) of images x (B, 3, H, W) in [0, 1]."""
        return self.forward_head(self.forward_features(x))

    def forward_encoder_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The original "encoder mode": encoder head logits (B, C, H/8, W/8)."""
        check_divisible(x, ERFNET_STRIDE, "ERFNet")
        return self.encoder(x, predict=True)
