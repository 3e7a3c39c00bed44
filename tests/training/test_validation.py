"""Validation during training (feedbackseg/training/validation.py): the val record is what
evaluate gives for best.pt's weights."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import _config, _quiet

from feedbackseg.data.dataset import ShardDataset
from feedbackseg.runs.checkpoints import load_checkpoint, model_from_checkpoint
from feedbackseg.training.train import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_validation_is_evaluate_on_the_bare_model(shards: Path, tmp_path: Path) -> None:
    """The val record is what evaluation.evaluate.evaluate gives for best.pt's weights."""
    from feedbackseg.evaluation.evaluate import evaluate

    config = _config(shards, tmp_path / "run", mode="feedback", iterations=2, max_steps=2,
                     val_every=2, checkpoint_every=1000)  # fmt: skip
    result = train(config, _quiet)
    val = result.last_val
    assert val is not None and val["step"] == 2
    model = model_from_checkpoint(load_checkpoint(tmp_path / "run" / "best.pt"))
    expected = evaluate(model, ShardDataset(shards, "val", height=32), iterations=2)
    assert val["val_miou"] == expected.confusion.as_dict()["miou"]
    assert val["per_class"] == expected.confusion.as_dict()["per_class"]
    assert val["val_pixels"] == expected.confusion.as_dict()["pixels"] > 0
    assert val["val_miou_per_iteration"] == [
        m.as_dict()["miou"] for m in expected.iteration_confusions
    ]
    assert val["val_resolution"] == list(expected.resolution) == [32, 64]
