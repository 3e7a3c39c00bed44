"""Helpers shared by this folder's tests (moved from test_models.py, unchanged)."""

from __future__ import annotations

import torch
from torch import nn

from feedbackseg.models import Restorer

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


def batch(gen: torch.Generator, b: int = 2, h: int = 16, w: int = 32, classes: int = C):
    distorted = torch.rand(b, 3, h, w, generator=gen)
    clean = torch.rand(b, 3, h, w, generator=gen)
    label = torch.randint(0, classes, (b, h, w), generator=gen)
    label[:, 0, :3] = 255
    return distorted, clean, label
