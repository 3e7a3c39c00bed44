"""``fbseg predict --format palette|labelids``: the official Cityscapes id table both ways, and
labelIds PNGs that are the palette run's prediction in official ids at the input's size."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from feedbackseg.data.cityscapes_labels import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    TRAIN_ID_TO_LABEL_ID,
    train_ids_to_label_ids,
)
from feedbackseg.evaluation.inference import EvalError
from feedbackseg.evaluation.predict import OUTPUT_FORMATS, predict_paths
from feedbackseg.models import build_model
from feedbackseg.runs.checkpoints import save_checkpoint
from turbsim.sources.cityscapes import LABEL_ID_TO_TRAIN_ID
from turbsim_cli.fbseg_cmd import main

pytestmark = pytest.mark.usefixtures("torch_one_thread")

#: trainId -> (official labelId, name), cityscapesScripts helpers/labels.py.
OFFICIAL = {
    0: (7, "road"),
    1: (8, "sidewalk"),
    2: (11, "building"),
    3: (12, "wall"),
    4: (13, "fence"),
    5: (17, "pole"),
    6: (19, "traffic light"),
    7: (20, "traffic sign"),
    8: (21, "vegetation"),
    9: (22, "terrain"),
    10: (23, "sky"),
    11: (24, "person"),
    12: (25, "rider"),
    13: (26, "car"),
    14: (27, "truck"),
    15: (28, "bus"),
    16: (31, "train"),
    17: (32, "motorcycle"),
    18: (33, "bicycle"),
}
OFFICIAL_IDS = {label_id for label_id, _ in OFFICIAL.values()}
#: Inputs of 50 x 90 px, processed at height 32 (32 x 64): the ids are resized back.
INPUT_HW = (50, 90)


def test_every_train_id_maps_to_its_official_id_and_back() -> None:
    for train_id, (label_id, name) in OFFICIAL.items():
        assert CITYSCAPES_CLASSES[train_id] == name
        assert int(TRAIN_ID_TO_LABEL_ID[train_id]) == label_id
        mapped = train_ids_to_label_ids(np.array([[train_id]], np.int64))
        assert mapped.dtype == np.uint8 and mapped.tolist() == [[label_id]]
        assert int(LABEL_ID_TO_TRAIN_ID[label_id]) == train_id  # the official table, back
    # ignore (255) and anything outside 0..18 (the void class 19 included): 0, 'unlabeled'
    outside = np.array([19, 20, 254, 255, -1, 1000])
    assert train_ids_to_label_ids(outside).tolist() == [0] * 6
    everything = np.arange(256, dtype=np.uint8)
    assert set(train_ids_to_label_ids(everything).tolist()) == OFFICIAL_IDS | {0}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model("erfnet", 19, small=True)
    path = tmp_path_factory.mktemp("labelids") / "erfnet.pt"
    config = {"height": 32, "iterations": 1, "num_classes": 19}
    payload = {"mode": "erfnet", "num_classes": 19, "small": True, "model": model.state_dict()}
    save_checkpoint(path, {**payload, "config": config, "step": 0})
    return path


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.jpg"):
        assert cv2.imwrite(str(folder / name), rng.integers(0, 256, (*INPUT_HW, 3), np.uint8))
    return folder


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _train_ids_of(seg_png: Path) -> np.ndarray:
    """The trainIds of a palette PNG (255 where no class colour)."""
    seg = cv2.cvtColor(cv2.imread(str(seg_png)), cv2.COLOR_BGR2RGB)
    ids = np.full(seg.shape[:2], 255, np.uint8)
    for k, colour in enumerate(CITYSCAPES_PALETTE):
        ids[np.all(seg == colour, axis=-1)] = k
    return ids


def test_labelids_are_the_palette_prediction_in_official_ids(
    checkpoint: Path, images: Path, tmp_path: Path
) -> None:
    default, palette, ids = tmp_path / "default", tmp_path / "palette", tmp_path / "ids"
    assert _cli("predict", checkpoint, images, "--out", default).exit_code == 0
    result = _cli("predict", checkpoint, images, "--out", palette, "--format", "palette")
    assert result.exit_code == 0, result.output
    result = _cli("predict", checkpoint, images, "--out", ids, "--format", "labelids")
    assert result.exit_code == 0, result.output
    # palette is the default, byte for byte
    names = ["a_seg.png", "a_sheet.png", "b_seg.png", "b_sheet.png"]
    assert sorted(p.name for p in default.iterdir()) == names
    for name in names:
        assert (default / name).read_bytes() == (palette / name).read_bytes()
    assert sorted(p.name for p in ids.iterdir()) == [
        "a_labelIds.png",
        "a_sheet.png",
        "b_labelIds.png",
        "b_sheet.png",
    ]
    for stem in ("a", "b"):
        written = cv2.imread(str(ids / f"{stem}_labelIds.png"), cv2.IMREAD_UNCHANGED)
        assert written.dtype == np.uint8 and written.shape == INPUT_HW  # one channel, input size
        assert set(np.unique(written).tolist()) <= OFFICIAL_IDS
        train = _train_ids_of(palette / f"{stem}_seg.png")
        assert train.shape == (32, 64) and 255 not in train  # the processing size
        expected = cv2.resize(train, INPUT_HW[::-1], interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(written, TRAIN_ID_TO_LABEL_ID[expected])
        sheet = f"{stem}_sheet.png"  # the sheet shows the palette either way
        assert (ids / sheet).read_bytes() == (palette / sheet).read_bytes()


def test_a_bad_format_is_a_usage_error_naming_the_flag(
    checkpoint: Path, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _cli("predict", checkpoint, images, "--out", out, "--format", "labelIds-png")
    assert result.exit_code == 2 and "'--format'" in result.output
    assert "palette" in result.output and "labelids" in result.output
    assert not out.exists() or not any(out.iterdir())
    help_text = _cli("predict", "--help").output
    assert "--format [palette|labelids]" in help_text
    assert tuple(OUTPUT_FORMATS) == ("palette", "labelids")  # what the CLI offers
    with pytest.raises(EvalError) as info:
        predict_paths(build_model("erfnet", 19, small=True), [images], out, output_format="ids")
    assert info.value.key == "output_format" and "labelids" in str(info.value)
