"""feedbackseg.modes: the one table of the training modes, and what follows from it."""

from __future__ import annotations

import pytest

from feedbackseg.modes import MODE_TABLE, MODES, mode_of


def test_the_table() -> None:
    assert MODES == ("erfnet", "restore-seg", "feedback", "restore")
    assert [m for m in MODES if mode_of(m).restorer] == ["restore-seg", "feedback", "restore"]
    assert [m for m in MODES if mode_of(m).segmenter] == ["erfnet", "restore-seg", "feedback"]
    assert [m for m in MODES if mode_of(m).feedback] == ["feedback"]
    assert {m: mode_of(m).size_multiple for m in MODES} == {
        "erfnet": 8, "restore-seg": 16, "feedback": 16, "restore": 16,
    }  # fmt: skip
    assert mode_of("restore").reports == ("restoration",)
    assert mode_of("feedback").reports == ("miou", "restoration")
    assert mode_of("erfnet").step_inputs("clean") is None
    with pytest.raises(ValueError, match="unknown mode 'bogus'; expected one of erfnet"):
        mode_of("bogus")


def test_networks_and_steps_follow_the_table() -> None:
    torch = pytest.importorskip("torch")
    from feedbackseg.config import RESTORER_MODES, SEGMENTER_MODES
    from feedbackseg.models import TRAIN_STEPS, build_model, model_parts

    torch.manual_seed(0)
    assert set(TRAIN_STEPS) == set(MODE_TABLE)
    assert RESTORER_MODES == ("restore-seg", "feedback", "restore")
    assert SEGMENTER_MODES == ("erfnet", "restore-seg", "feedback")
    for name, mode in MODE_TABLE.items():
        restorer, segmenter = model_parts(build_model(name, small=True))
        assert (restorer is not None, segmenter is not None) == (mode.restorer, mode.segmenter)
        if restorer is not None:
            assert restorer.has_feedback == mode.feedback, name
