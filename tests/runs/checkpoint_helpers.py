"""Helpers shared by this folder's tests (moved from test_original.py, unchanged)."""

from __future__ import annotations

import torch
from torch import nn


def randomise_bn(module: nn.Module) -> None:
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            n = bn.num_features
            bn.running_mean.copy_(0.1 * torch.randn(n))
            bn.running_var.copy_(0.5 + torch.rand(n))
            with torch.no_grad():
                bn.weight.copy_(0.5 + torch.rand(n))
                bn.bias.copy_(0.1 * torch.randn(n))


def original_style(state: dict, prefix: str = "module.") -> dict:
    """A PyTorch 0.3 DataParallel state dict: ``module.`` keys, no num_batches_tracked."""
    return {
        prefix + k: v.clone() for k, v in state.items() if not k.endswith("num_batches_tracked")
    }
