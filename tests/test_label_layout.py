"""feedbackseg.label_layout: the 19-class layout (255 ignored) and the original's 20 (void 19)."""

from __future__ import annotations

import numpy as np
import pytest

from feedbackseg.label_layout import LAYOUT_19, LAYOUT_20, label_layout
from turbsim.shards.schema import IGNORE_LABEL, NUM_CLASSES


def test_layouts_by_number() -> None:
    assert label_layout(19) is LAYOUT_19 and label_layout(20) is LAYOUT_20
    assert LAYOUT_19.evaluated == LAYOUT_20.evaluated == NUM_CLASSES == 19
    assert (LAYOUT_19.void_class, LAYOUT_20.void_class) == (None, 19)
    for bad in (18, 21, 0, "19", None):
        with pytest.raises(ValueError, match="must be 19 or 20"):
            label_layout(bad)


def test_training_labels_map_ignore_to_void_only_in_the_20_class_layout() -> None:
    stored = np.array([[0, 18, IGNORE_LABEL]], np.int64)
    assert LAYOUT_19.training_labels(stored.copy()).tolist() == [[0, 18, 255]]
    assert LAYOUT_20.training_labels(stored.copy()).tolist() == [[0, 18, 19]]


def test_what_loss_and_evaluation_ignore() -> None:
    assert LAYOUT_19.eval_ignore == 255 and LAYOUT_20.eval_ignore == 19
    assert LAYOUT_19.loss_ignore(weighted=True) == LAYOUT_19.loss_ignore(weighted=False) == 255
    # weighted CB-iFL gives the void class weight 0; an unweighted loss must ignore it
    assert LAYOUT_20.loss_ignore(weighted=True) == 255
    assert LAYOUT_20.loss_ignore(weighted=False) == 19


def test_dataset_and_config_refuse_other_layouts(tmp_path) -> None:
    pytest.importorskip("torch")
    from feedbackseg.config import ConfigError, resolve_config

    with pytest.raises(ConfigError, match="must be 19 or 20, got 21"):
        resolve_config(tmp_path, tmp_path / "run", overrides={"num_classes": 21})
