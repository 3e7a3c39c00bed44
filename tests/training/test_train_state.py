"""What a run carries from step to step (feedbackseg/training/train_state.py): the class weights
from each source, and from the shards under the pass lock."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_helpers import _config, _quiet

from feedbackseg.training.losses import BMVC2020_CLASS_WEIGHTS
from feedbackseg.training.train_state import initial_class_weights

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_class_weights_sources(shards: Path) -> None:
    c19 = _config(shards, "r", class_weights="bmvc2020")
    torch.testing.assert_close(initial_class_weights(c19, _quiet), BMVC2020_CLASS_WEIGHTS[:19])
    c20 = _config(shards, "r", num_classes=20)
    w20 = initial_class_weights(c20, _quiet)
    assert w20.shape == (20,) and w20[19] == 0  # the void class weighs nothing
    assert initial_class_weights(_config(shards, "r", loss="ifl"), _quiet) is None


def test_class_weights_from_shards_pass_locking(
    shards: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import feedbackseg.training.train_state as state_module

    seen: list[dict] = []
    real = state_module.pixel_counts

    def recording(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(state_module, "pixel_counts", recording)
    weights = initial_class_weights(_config(shards, "r", locking=False), _quiet)
    assert seen == [{"locking": False}] and weights.shape == (19,)
