"""Prediction on image files (feedbackseg.evaluation.predict, ``fbseg predict``): sizes, palette,
the BGR -> RGB boundary, and one-line refusals."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from feedbackseg.data.cityscapes_labels import CITYSCAPES_PALETTE
from feedbackseg.evaluation.predict import TITLE_PX, network_size, predict_paths
from feedbackseg.models import build_model
from feedbackseg.runs.checkpoints import save_checkpoint
from turbsim_cli.fbseg_cmd import main

PALETTE = {tuple(c) for c in CITYSCAPES_PALETTE.tolist()}
#: Input images of 60 x 100 px: at the checkpoints' height 64 they are processed at 64 x 112
#: (100 * 64 / 60 = 106.7 -> the nearest multiple of 16).
IMAGE_HW = (60, 100)
NET_HW = (64, 112)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _checkpoint(path: Path, mode: str) -> Path:
    torch.manual_seed(0)
    model = build_model(mode, 19, small=True)
    config = {"height": 64, "iterations": 2, "num_classes": 19}
    payload = {"mode": mode, "num_classes": 19, "small": True, "model": model.state_dict()}
    save_checkpoint(path, {**payload, "config": config, "step": 0})
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("predict-ckpt")
    return {m: _checkpoint(tmp / f"{m}.pt", m) for m in ("feedback", "erfnet")}


@pytest.fixture
def images(tmp_path) -> Path:
    """A folder with a PNG, a JPEG and a file that is not an image (ignored in folders)."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("street.png", "other.jpg"):
        image = rng.integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)
        assert cv2.imwrite(str(folder / name), image)
    (folder / "readme.txt").write_text("not an image")
    return folder


def _rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, path
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _colours(image: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(c) for c in np.unique(image.reshape(-1, 3), axis=0).tolist()}


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], result.output


def test_network_size_keeps_aspect_in_multiples_of_16():
    assert network_size(IMAGE_HW, 64) == NET_HW
    assert network_size((1024, 2048), 224) == (224, 448)  # the original's 224 x 448
    assert network_size((1024, 2048), None) == (1024, 2048)
    assert network_size((70, 30), None) == (64, 32)


def test_predict_one_png_writes_three_files(checkpoints, images, tmp_path):
    out = tmp_path / "out"
    result = _cli("predict", checkpoints["feedback"], images / "street.png", "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "street_restored.png",
        "street_seg.png",
        "street_sheet.png",
    ]
    seg, restored, sheet = (_rgb(out / f"street_{k}.png") for k in ("seg", "restored", "sheet"))
    assert seg.shape == restored.shape == (*NET_HW, 3)
    assert sheet.shape == (NET_HW[0] + TITLE_PX, 3 * NET_HW[1], 3)
    assert _colours(seg) <= PALETTE
    # the panels under the title strip are the three images
    body = sheet[TITLE_PX:]
    np.testing.assert_array_equal(body[:, NET_HW[1] : 2 * NET_HW[1]], restored)
    np.testing.assert_array_equal(body[:, 2 * NET_HW[1] :], seg)
    expected_input = cv2.resize(_rgb(images / "street.png"), NET_HW[::-1])
    np.testing.assert_array_equal(body[:, : NET_HW[1]], expected_input)
    assert sheet[:TITLE_PX].max() > 0  # a title was drawn
    assert not list(out.glob("*.tmp"))


def test_predict_a_folder_with_erfnet(checkpoints, images, tmp_path):
    out = tmp_path / "out"
    result = _cli("predict", checkpoints["erfnet"], images, "--out", out, "--height", "32")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["other_seg.png", "other_sheet.png", "street_seg.png", "street_sheet.png"]
    h, w = network_size(IMAGE_HW, 32)
    for stem in ("street", "other"):
        seg = _rgb(out / f"{stem}_seg.png")
        assert seg.shape == (h, w, 3) and _colours(seg) <= PALETTE
        assert _rgb(out / f"{stem}_sheet.png").shape == (h + TITLE_PX, 2 * w, 3)  # no restored


class _RedIsRider(nn.Module):
    """Predicts rider (trainId 12) where the first input channel is bright, road elsewhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 19, *x.shape[2:])
        logits[:, 12] = (x[:, 0] > 0.5).float()
        logits[:, 0] = 0.5
        return logits


def test_images_enter_the_network_as_rgb(tmp_path):
    """A pure red picture (BGR (0, 0, 255) on disk) must reach channel 0 of the network."""
    red = np.zeros((32, 64, 3), np.uint8)
    red[..., 2] = 255  # OpenCV's BGR order: this file is red
    assert cv2.imwrite(str(tmp_path / "red.png"), red)
    written = predict_paths(_RedIsRider(), [tmp_path / "red.png"], tmp_path / "out", height=32)
    assert [p.name for p in written] == ["red_seg.png", "red_sheet.png"]
    seg = _rgb(tmp_path / "out" / "red_seg.png")
    assert _colours(seg) == {(255, 0, 0)}  # rider's colour, written as RGB
    assert _colours(_rgb(tmp_path / "out" / "red_sheet.png")[TITLE_PX:, :64]) == {(255, 0, 0)}


def test_predict_refuses_bad_paths_in_one_line(checkpoints, images, tmp_path):
    ckpt = checkpoints["erfnet"]
    out = tmp_path / "out"
    _one_line_error(_cli("predict", ckpt, images / "readme.txt", "--out", out), "readme.txt")
    _one_line_error(_cli("predict", ckpt, tmp_path / "gone.png", "--out", out), "gone.png")
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not a png at all")
    _one_line_error(_cli("predict", ckpt, fake, "--out", out), "fake.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(_cli("predict", ckpt, empty, "--out", out), "empty")
    _one_line_error(
        _cli("predict", checkpoints["feedback"], images, "--out", out, "--height", "40"),
        "--height",
    )
    _one_line_error(_cli("predict", images / "street.png", images, "--out", out), "street.png")
    assert not out.exists() or not any(out.iterdir())


OFFICIAL_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]


def test_train_ids_to_official_label_ids_round_trip():
    from feedbackseg.data.cityscapes_labels import TRAIN_ID_TO_LABEL_ID, train_ids_to_label_ids
    from turbsim.sources.cityscapes import LABEL_ID_TO_TRAIN_ID

    train_ids = np.array([[*range(19), 255]], np.uint8)
    label_ids = train_ids_to_label_ids(train_ids)
    assert label_ids.dtype == np.uint8 and label_ids[0].tolist() == [*OFFICIAL_IDS, 0]
    back = LABEL_ID_TO_TRAIN_ID[label_ids]  # the reader's official table takes them back
    np.testing.assert_array_equal(back, train_ids)
    assert not TRAIN_ID_TO_LABEL_ID.flags.writeable


def test_predict_labelids_writes_official_ids_at_the_input_size(checkpoints, images, tmp_path):
    from feedbackseg.data.cityscapes_labels import CITYSCAPES_PALETTE, train_ids_to_label_ids

    palette_out, ids_out = tmp_path / "palette", tmp_path / "ids"
    street = images / "street.png"
    assert _cli("predict", checkpoints["feedback"], street, "--out", palette_out).exit_code == 0
    result = _cli(
        "predict", checkpoints["feedback"], street, "--out", ids_out, "--format", "labelids"
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in ids_out.iterdir()) == [
        "street_labelIds.png",
        "street_restored.png",
        "street_sheet.png",
    ]
    written = cv2.imread(str(ids_out / "street_labelIds.png"), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint8 and written.shape == IMAGE_HW  # one channel, input size
    assert set(np.unique(written).tolist()) <= set(OFFICIAL_IDS)
    # the same prediction as the palette run, mapped to ids and resized (nearest) to the input
    seg = _rgb(palette_out / "street_seg.png")
    train = np.full(seg.shape[:2], 255, np.uint8)
    for k, colour in enumerate(CITYSCAPES_PALETTE):
        train[np.all(seg == colour, axis=-1)] = k
    expected = cv2.resize(train, IMAGE_HW[::-1], interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(written, train_ids_to_label_ids(expected))
    bad = _cli("predict", checkpoints["feedback"], street, "--out", ids_out, "--format", "ids")
    assert bad.exit_code == 2 and "--format" in bad.output
