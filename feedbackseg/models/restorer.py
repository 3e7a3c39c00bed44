"""The restoration network R: a U-Net that predicts a bounded flow field and warps the distorted
image with it, plus the spatial-feedback block (SPEC-feedbackseg sections 2.2 and 2.3).

The U-Net follows the layout of jvanvugt/pytorch-unet as used by the BMVC 2020 release
(``train/unet_model.py``): ``down_path.{i}.block`` = conv3x3 -> ReLU -> BN -> conv3x3 -> ReLU ->
BN (padding 1; parameter indices 0, 2, 3, 5), widths ``base_width * 2**i``, max-pool 2 between
levels; ``up_path.{i}.up`` = ConvTranspose2d(kernel 2, stride 2) and ``up_path.{i}.conv_block``
after the skip concatenation; ``last`` = 1x1 conv -> 2 channels -> tanh -> x ``max_flow_px``.
The feedback block is ``trans_block.main`` (indices 1, 2 = conv, BN; 4, 5 = conv, BN), as in the
release's ``TransBlockRes``. With ``base_width=64, depth=5`` the U-Net holds 31,043,586
parameters and the feedback block (C = 20) 588,612 more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from feedbackseg.models.flow import warp

#: Scale of the feedback term added to the bottleneck (SPEC 2.3; the original's 0.001).
FEEDBACK_SCALE = 1e-3

#: Bound of the predicted flow [px] (the original's tanh x 10).
MAX_FLOW_PX = 10.0


class ConvBlock(nn.Module):
    """conv3x3 -> ReLU -> BN -> conv3x3 -> ReLU -> BN (padding 1).

    Shapes: (B, in, H, W) -> (B, out, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UpBlock(nn.Module):
    """ConvTranspose 2x2 stride 2 (in -> out), concat with the skip, ConvBlock(in -> out).

    Shapes: x (B, in, h, w), skip (B, out, 2h, 2w) -> (B, out, 2h, 2w); in = 2 out.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv_block = ConvBlock(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([self.up(x), skip], 1))


def feedback_feature(delta: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """The feedback block's input: concat over image channels k of ``delta * prev[:, k]``.

    SPEC 2.3; channel ``k * C + c`` holds ``delta[:, c] * prev[:, k]``, the order of the
    original's ``torch.cat([r_fb1 * r_fb2[:, 0], r_fb1 * r_fb2[:, 1], r_fb1 * r_fb2[:, 2]], 1)``.

    Args:
        delta: logits(t) - logits(t-1), (B, C, H, W), detached by the caller.
        prev: the previous restored image, (B, K, H, W) (K = 3 colour channels), detached.

    Returns:
        (B, K * C, H, W).
    """
    return torch.cat([delta * prev[:, k : k + 1] for k in range(prev.shape[1])], 1)


def _pool_kernels(factor: int) -> tuple[int, int]:
    """Split a power-of-two downsampling factor into the two average pools of the block."""
    first = 1
    while first * first < factor:
        first *= 2
    return first, factor // first


class FeedbackBlock(nn.Module):
    """The spatial-feedback block (SPEC 2.3): AvgPool -> conv3x3 -> BN -> ReLU -> conv3x3 -> BN ->
    AvgPool, from the feedback feature at full resolution to the U-Net bottleneck.

    ``main`` = [AvgPool2d(k1), Conv2d(F, F), BatchNorm2d(F), ReLU, Conv2d(F, out),
    BatchNorm2d(out), AvgPool2d(k2)] with k1 * k2 = ``downsample`` (4 and 4 for the original's
    depth-5 U-Net, 1/16 resolution).

    Args:
        in_channels: F = image channels x classes (60 for 3 x 20).
        out_channels: bottleneck channels (1024 in the original).
        downsample: bottleneck stride, a power of two (16 for depth 5).
    """

    def __init__(self, in_channels: int, out_channels: int, downsample: int = 16) -> None:
        super().__init__()
        k1, k2 = _pool_kernels(downsample)
        self.main = nn.Sequential(
            nn.AvgPool2d(k1),
            nn.Conv2d(in_channels, in_channels, 3, padding=1),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.AvgPool2d(k2),
        )

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """(B, F, H, W) -> (B, out, H / downsample, W / downsample)."""
        return self.main(feature)


class Restorer(nn.Module):
    """U-Net flow predictor + warp: distorted image -> restored image (SPEC 2.2, 2.3).

    Convention: the flow (B, 2, H, W) is in pixels, channel 0 = row (down) displacement,
    channel 1 = column (right) displacement; restored[r, c] = distorted sampled bilinearly at
    (r + flow[0, r, c], c + flow[1, r, c]), clamped to the border
    (:func:`feedbackseg.models.flow.warp`). |flow| <= ``max_flow_px`` component-wise (tanh bound).

    Args:
        in_channels: image channels K (3).
        base_width: channels of the first level; level i has ``base_width * 2**i``.
        depth: number of levels (5 in the original: 64 .. 1024 channels, bottleneck at 1/16).
        num_classes: C of the segmenter whose logits feed the feedback block.
        feedback: build the feedback block ``trans_block``; False gives the plain restorer
            (the ``restore-seg`` baseline), which then refuses a feedback signal.
        feedback_scale: s in ``bottleneck + s * trans_block(feature)`` (0.001).
        max_flow_px: flow bound [px] (10).
        batch_stats_at_inference: keep every BatchNorm of R in batch-statistics mode even in
            ``eval()`` (``--restorer-bn batch``): what the original does, which never calls
            ``rmodel.eval()``; False (default) uses the running statistics at inference.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_width: int = 64,
        depth: int = 5,
        num_classes: int = 19,
        feedback: bool = True,
        feedback_scale: float = FEEDBACK_SCALE,
        max_flow_px: float = MAX_FLOW_PX,
        batch_stats_at_inference: bool = False,
    ) -> None:
        super().__init__()
        self.batch_stats_at_inference = bool(batch_stats_at_inference)
        if depth < 1 or base_width < 1 or in_channels < 1 or num_classes < 1:
            raise ValueError(
                "Restorer needs depth, base_width, in_channels, num_classes >= 1, got "
                f"{depth}, {base_width}, {in_channels}, {num_classes}"
            )
        if max_flow_px <= 0:
            raise ValueError(f"max_flow_px must be > 0, got {max_flow_px}")
        self.in_channels = in_channels
        self.depth = depth
        self.num_classes = num_classes
        self.feedback_scale = feedback_scale
        self.max_flow_px = max_flow_px
        self.stride = 2 ** (depth - 1)

        widths = [base_width * 2**i for i in range(depth)]
        inputs = [in_channels, *widths[:-1]]
        self.down_path = nn.ModuleList(
            ConvBlock(cin, cout) for cin, cout in zip(inputs, widths, strict=True)
        )
        self.up_path = nn.ModuleList(
            UpBlock(widths[i + 1], widths[i]) for i in reversed(range(depth - 1))
        )
        self.last = nn.Conv2d(base_width, 2, kernel_size=1)
        self.trans_block = (
            FeedbackBlock(in_channels * num_classes, widths[-1], self.stride) if feedback else None
        )

    @property
    def has_feedback(self) -> bool:
        return self.trans_block is not None

    def train(self, mode: bool = True) -> Restorer:
        """As ``nn.Module.train``; with ``batch_stats_at_inference`` the BatchNorm layers stay
        in training mode (batch statistics, running averages updated) under ``eval()``."""
        super().train(mode)
        if not mode and self.batch_stats_at_inference:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.train(True)
        return self

    def zero_flow_head(self) -> None:
        """Set the last 1x1 convolution's weight and bias to 0: the flow starts at exactly 0
        (the identity warp) for every input (``--flow-init zero``). The first step's
        gradient reaches the head's weights only (the rest of R is behind a zero weight);
        from the second step on, all of R learns."""
        nn.init.zeros_(self.last.weight)
        nn.init.zeros_(self.last.bias)

    def _check_inputs(
        self, distorted: torch.Tensor, delta: torch.Tensor | None, prev: torch.Tensor | None
    ) -> None:
        if distorted.dim() != 4 or distorted.shape[1] != self.in_channels:
            raise ValueError(
                f"Restorer expects distorted of shape (B, {self.in_channels}, H, W), "
                f"got {tuple(distorted.shape)}"
            )
        height, width = distorted.shape[-2:]
        if height % self.stride or width % self.stride:
            raise ValueError(
                f"Restorer (U-Net depth {self.depth}) needs H and W divisible by {self.stride}, "
                f"got an input of size {height}x{width} (HxW)"
            )
        if (delta is None) != (prev is None):
            raise ValueError("give both delta and prev (the feedback signal) or neither")
        if delta is None:
            return
        if self.trans_block is None:
            raise ValueError("this Restorer was built with feedback=False: delta must be None")
        batch = distorted.shape[0]
        expected = {
            "delta": (delta, (batch, self.num_classes, height, width)),
            "prev": (prev, (batch, self.in_channels, height, width)),
        }
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")

    def predict_flow(
        self,
        distorted: torch.Tensor,
        delta: torch.Tensor | None = None,
        prev: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The flow field (B, 2, H, W) [px] (see the class Convention), without warping.

        Args:
            distorted: (B, K, H, W), H and W divisible by 2**(depth - 1).
            delta: logits(t) - logits(t-1), (B, C, H, W), detached; None for no feedback.
            prev: previous restored image (B, K, H, W), detached; given iff delta is.
        """
        self._check_inputs(distorted, delta, prev)
        skips = []
        x = distorted
        for i, down in enumerate(self.down_path):
            x = down(x)
            if i != self.depth - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        if delta is not None:
            x = x + self.feedback_scale * self.trans_block(feedback_feature(delta, prev))
        for up, skip in zip(self.up_path, reversed(skips), strict=True):
            x = up(x, skip)
        return self.max_flow_px * torch.tanh(self.last(x))

    def forward(
        self,
        distorted: torch.Tensor,
        delta: torch.Tensor | None = None,
        prev: torch.Tensor | None = None,
        return_flow: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Restore ``distorted`` (B, K, H, W): returns restored (B, K, H, W), or with
        ``return_flow`` (restored, flow (B, 2, H, W) [px]). See :meth:`predict_flow`."""
        flow = self.predict_flow(distorted, delta, prev)
        restored = warp(distorted, flow)
        return (restored, flow) if return_flow else restored
