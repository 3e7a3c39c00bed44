"""This package's checkpoints (feedbackseg/runs/checkpoints.py): save, load with weights_only,
rebuild the network of the mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from checkpoint_helpers import original_style, randomise_bn

from feedbackseg.models import ERFNet
from feedbackseg.runs.checkpoints import CheckpointError


# ------------------------------------------------------------------- this package's format
@pytest.mark.parametrize("mode", ["erfnet", "restore-seg", "feedback"])
def test_own_checkpoint_round_trip(tmp_path: Path, mode: str) -> None:
    """save_checkpoint -> load_checkpoint (weights only) -> model_from_checkpoint rebuilds the
    network through build_model and computes exactly what the saved one does."""
    from feedbackseg.models import build_model, predict_logits
    from feedbackseg.runs.checkpoints import (
        CHECKPOINT_FORMAT,
        load_checkpoint,
        model_from_checkpoint,
        save_checkpoint,
    )

    net = build_model(mode, num_classes=5, small=True)
    randomise_bn(net)
    path = tmp_path / "run" / "best.pt"
    payload = {"mode": mode, "num_classes": 5, "small": True, "model": net.state_dict()}
    save_checkpoint(path, {**payload, "step": 3})
    checkpoint = load_checkpoint(path)
    assert (checkpoint["format"], checkpoint["step"]) == (CHECKPOINT_FORMAT, 3)
    rebuilt = model_from_checkpoint(checkpoint, path)
    assert type(rebuilt) is type(net) and not rebuilt.training
    net.eval()
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(predict_logits(rebuilt, x, 2), predict_logits(net, x, 2))
    original = tmp_path / "erfnet_pretrained.pth"
    torch.save(original_style(ERFNet(num_classes=5).state_dict()), original)
    with pytest.raises(CheckpointError, match="fbseg import-checkpoint"):
        load_checkpoint(original)
    with pytest.raises(CheckpointError, match="unknown model mode 'unet'"):
        model_from_checkpoint({**checkpoint, "mode": "unet"}, path)
