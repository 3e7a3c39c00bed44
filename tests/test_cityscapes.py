"""turbsim.sources.cityscapes: the labelId -> trainId facts, PNG header checks, discovery and
validation of Cityscapes trees (synthetic ones and hand-broken ones), and reading images and
labels."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from turbsim.sources.cityscapes import (
    LABEL_ID_TO_TRAIN_ID,
    TRAIN_ID_NAMES,
    TRAIN_ID_PALETTE,
    TRAIN_ID_TO_LABEL_ID,
    CityscapesError,
    CityscapesSample,
    CityscapesWarning,
    colorize_train_ids,
    discover,
    png_is_complete,
    png_size,
    read_image_rgb,
    read_train_ids,
    validate,
)
from turbsim.sources.synthetic import write_sample_tree

# The mapping as written in cityscapesScripts helpers/labels.py (labelId: trainId), typed in
# independently of the module's table.
OFFICIAL_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
SIZE = (32, 64)


# ------------------------------------------------------------------------------ facts
def test_label_lut_facts() -> None:
    lut = LABEL_ID_TO_TRAIN_ID
    assert lut.dtype == np.uint8 and lut.shape == (256,)
    assert (lut[7], lut[26], lut[33], lut[0], lut[255]) == (0, 13, 18, 255, 255)
    mapped = np.flatnonzero(lut != 255)
    assert sorted(lut[mapped].tolist()) == list(range(19))  # 19 ids, each trainId once
    assert {int(i): int(lut[i]) for i in mapped} == OFFICIAL_TRAIN_IDS
    assert np.array_equal(lut[TRAIN_ID_TO_LABEL_ID], np.arange(19))
    with pytest.raises(ValueError):
        lut[0] = 3  # the table is read-only


def test_names_and_palette() -> None:
    assert len(TRAIN_ID_NAMES) == 19
    assert (TRAIN_ID_NAMES[0], TRAIN_ID_NAMES[10], TRAIN_ID_NAMES[13]) == ("road", "sky", "car")
    assert TRAIN_ID_PALETTE.shape == (19, 3) and TRAIN_ID_PALETTE.dtype == np.uint8
    assert TRAIN_ID_PALETTE[0].tolist() == [128, 64, 128]  # road
    assert TRAIN_ID_PALETTE[10].tolist() == [70, 130, 180]  # sky
    assert TRAIN_ID_PALETTE[13].tolist() == [0, 0, 142]  # car
    assert TRAIN_ID_PALETTE[18].tolist() == [119, 11, 32]  # bicycle


def test_colorize_train_ids() -> None:
    label = np.array([[0, 255], [13, 19]], np.uint8)
    rgb = colorize_train_ids(label)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == [128, 64, 128]
    assert rgb[1, 0].tolist() == [0, 0, 142]
    assert rgb[0, 1].tolist() == [0, 0, 0] and rgb[1, 1].tolist() == [0, 0, 0]
    assert colorize_train_ids(np.array([[-1, 2]]))[0].tolist() == [[0, 0, 0], [70, 70, 70]]


# ------------------------------------------------------------------------------ PNG headers
def test_png_size_and_completeness(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.zeros((37, 53, 3), np.uint8))
    assert png_size(path) == (37, 53)
    assert png_is_complete(path)
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    assert png_size(path) == (37, 53)  # the header is still there
    assert not png_is_complete(path)
    path.write_bytes(b"")
    assert not png_is_complete(path)
    with pytest.raises(CityscapesError, match="empty"):
        png_size(path)
    path.write_bytes(b"hello, I am not a PNG at all, just text")
    assert not png_is_complete(path)
    with pytest.raises(CityscapesError, match="not a PNG"):
        png_size(path)
    with pytest.raises(CityscapesError, match="missing") as error:
        png_size(tmp_path / "nothing.png")
    assert str(tmp_path / "nothing.png") in str(error.value)


# ------------------------------------------------------------------------------ discovery
@pytest.fixture(scope="module")
def clean_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cityscapes")
    write_sample_tree(root, 3, *SIZE, seed=5, splits=("train", "val", "test"))
    return root


@pytest.fixture
def tree(clean_tree: Path, tmp_path: Path) -> Path:
    """A private copy of a synthetic tree (train, val: 3 labelled samples; test: 3 images)."""
    root = tmp_path / "root"
    shutil.copytree(clean_tree, root)
    return root


def test_discover_and_validate_synthetic_tree(clean_tree: Path) -> None:
    with pytest.warns(CityscapesWarning, match="test split has no public labels"):
        found = discover(clean_tree, ["train", "val", "test"])
    assert list(found) == ["train", "val", "test"]
    assert [s.stem for s in found["train"]] == [
        "aachen_000000_000019",
        "bochum_000000_000019",
        "bremen_000000_000019",
    ]
    first = found["train"][0]
    assert first == CityscapesSample(
        "train",
        "aachen",
        "aachen_000000_000019",
        clean_tree / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png",
        clean_tree / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png",
        "labelIds",
    )
    assert all(s.has_labels and s.label_kind == "labelIds" for s in found["val"])
    assert all(not s.has_labels and s.label_kind is None for s in found["test"])
    for samples in found.values():
        good, skipped = validate(samples)
        assert good == samples and skipped == []


def test_discover_sorts_by_stem_and_ignores_other_files(tree: Path) -> None:
    city = tree / "leftImg8bit/train/aachen"
    (city / "README.txt").write_text("not an image")
    (city / ".aachen_000009_000019_leftImg8bit.png.123.tmp").write_bytes(b"partial")
    (tree / "leftImg8bit/train/notes.txt").write_text("a file beside the city folders")
    stems = [s.stem for s in discover(tree, ["train"])["train"]]
    assert stems == sorted(stems) and len(stems) == 3


def test_discover_rejects_bad_names(tree: Path) -> None:
    bad = tree / "leftImg8bit/train/aachen/aachen_12_000019_leftImg8bit.png"
    shutil.copy(tree / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png", bad)
    with pytest.raises(CityscapesError, match="name is not") as error:
        discover(tree, ["train"])
    assert str(bad) in str(error.value)
    bad.unlink()
    other_city = tree / "leftImg8bit/train/aachen/bochum_000000_000019_leftImg8bit.png"
    shutil.copy(tree / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png", other_city)
    with pytest.raises(CityscapesError) as error:
        discover(tree, ["train"])
    assert str(other_city) in str(error.value)


@pytest.mark.parametrize(
    ("remove", "splits", "named"),
    [
        (None, ["train", "nope"], "leftImg8bit/nope"),
        ("leftImg8bit/val", ["train", "val"], "leftImg8bit/val"),
        ("gtFine/val", ["val"], "gtFine/val"),
        ("leftImg8bit", ["train"], "leftImg8bit/train"),
    ],
)
def test_discover_missing_folders(tree: Path, remove: str | None, splits, named: str) -> None:
    if remove:
        shutil.rmtree(tree / remove)
    with pytest.raises(CityscapesError, match="missing") as error:
        discover(tree, splits)
    assert str(tree / named) in str(error.value)
    assert "\n" not in str(error.value)


def test_discover_missing_root_and_empty_split(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(CityscapesError, match="missing") as error:
        discover(tmp_path / "absent", ["train"])
    assert str(tmp_path / "absent") in str(error.value)
    for image in (tree / "leftImg8bit/val").rglob("*.png"):
        image.unlink()
    with pytest.raises(CityscapesError, match="no \\*_leftImg8bit.png images") as error:
        discover(tree, ["val"])
    assert str(tree / "leftImg8bit/val") in str(error.value)
    with pytest.raises(TypeError):
        discover(tree, "train")


def test_test_split_labels_are_ignore_even_if_gtfine_has_files(tree: Path) -> None:
    # The official gtFine zip ships placeholder test labels: they must not be used.
    shutil.copytree(tree / "gtFine/val/frankfurt", tree / "gtFine/test/berlin")
    with pytest.warns(CityscapesWarning):
        (sample, *_) = discover(tree, ["test"])["test"]
    assert sample.label_path is None
    label = read_train_ids(sample)
    assert label.shape == SIZE and label.dtype == np.uint8 and (label == 255).all()


# ------------------------------------------------------------------------------ validation
def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _not_png(path: Path) -> None:
    path.write_text("<html>404 Not Found</html>")


def _smaller(path: Path) -> None:
    cv2.imwrite(str(path), np.zeros((SIZE[0] // 2, SIZE[1] // 2), np.uint8))


def _colour(path: Path) -> None:
    cv2.imwrite(str(path), np.zeros((*SIZE, 3), np.uint8))


def _delete(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize(
    ("which", "damage", "reason"),
    [
        ("label", _delete, "missing (label of leftImg8bit/train/bochum/bochum_000000_000019"),
        ("label", _smaller, "size 16x32 differs from its image"),
        ("label", _colour, "not an 8-bit single-channel label image"),
        ("label", _cut, "truncated"),
        ("image", _cut, "truncated (no IEND chunk at the end)"),
        ("image", _empty, "empty file (0 bytes)"),
        ("label", _empty, "empty file (0 bytes)"),
        ("image", _not_png, "not a PNG file"),
        ("image", _delete, "missing"),
    ],
)
def test_validate_reports_the_bad_file(tree: Path, which: str, damage, reason: str) -> None:
    samples = discover(tree, ["train"])["train"]
    victim = samples[1]
    bad_path = victim.label_path if which == "label" else victim.image_path
    damage(bad_path)

    with pytest.raises(CityscapesError) as error:
        validate(samples)
    message = str(error.value)
    assert message.startswith(f"{bad_path}: ")
    assert reason in message
    assert "\n" not in message

    good, skipped = validate(samples, skip_bad=True)
    assert good == [samples[0], samples[2]]
    assert len(skipped) == 1
    assert skipped[0].path == str(bad_path)
    assert reason in skipped[0].reason


def test_validate_unreadable_label_file_is_reported(tree: Path) -> None:
    samples = discover(tree, ["val"])["val"]
    label = samples[0].label_path
    label.unlink()
    label.mkdir()  # a folder where the label should be
    with pytest.raises(CityscapesError) as error:
        validate(samples)
    assert str(label) in str(error.value)


def test_cityscapes_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(CityscapesError("a/b.png: missing", "a/b.png", "missing")))
    assert (str(error), error.path, error.reason) == ("a/b.png: missing", "a/b.png", "missing")


# ------------------------------------------------------------------------------ reading
def test_read_image_rgb_converts_from_bgr(tmp_path: Path) -> None:
    bgr = np.zeros((3, 4, 3), np.uint8)
    bgr[1, 2] = (0, 0, 255)  # pure red in OpenCV's BGR order
    bgr[0, 0] = (255, 0, 0)  # pure blue
    path = tmp_path / "red.png"
    assert cv2.imwrite(str(path), bgr)
    rgb = read_image_rgb(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (3, 4, 3)
    assert rgb[1, 2].tolist() == [255, 0, 0]
    assert rgb[0, 0].tolist() == [0, 0, 255]

    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((2, 2), 77, np.uint8))
    assert read_image_rgb(grey).shape == (2, 2, 3) and (read_image_rgb(grey) == 77).all()


def test_read_image_rgb_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "x_leftImg8bit.png"
    path.write_text("not an image")
    with pytest.raises(CityscapesError, match="unreadable") as error:
        read_image_rgb(path)
    assert str(path) in str(error.value)
    with pytest.raises(CityscapesError, match="missing"):
        read_image_rgb(tmp_path / "absent.png")


def _sample_with_label(tmp_path: Path, label: np.ndarray, kind: str) -> CityscapesSample:
    image = tmp_path / "aachen_000000_000019_leftImg8bit.png"
    cv2.imwrite(str(image), np.zeros((*label.shape, 3), np.uint8))
    path = tmp_path / f"aachen_000000_000019_gtFine_{kind}.png"
    cv2.imwrite(str(path), label)
    return CityscapesSample("train", "aachen", "aachen_000000_000019", image, path, kind)


def test_read_train_ids_maps_label_ids(tmp_path: Path) -> None:
    label = np.array([[7, 26, 0], [33, 255, 1]], np.uint8)
    sample = _sample_with_label(tmp_path, label, "labelIds")
    assert read_train_ids(sample).tolist() == [[0, 13, 255], [18, 255, 255]]


def test_read_train_ids_keeps_train_ids(tmp_path: Path) -> None:
    label = np.array([[0, 18, 19], [200, 255, 5]], np.uint8)
    sample = _sample_with_label(tmp_path, label, "labelTrainIds")
    train_ids = read_train_ids(sample)
    assert train_ids.dtype == np.uint8
    assert train_ids.tolist() == [[0, 18, 255], [255, 255, 5]]


def test_read_train_ids_rejects_colour_label(tmp_path: Path) -> None:
    image = tmp_path / "aachen_000000_000019_leftImg8bit.png"
    cv2.imwrite(str(image), np.zeros((2, 2, 3), np.uint8))
    path = tmp_path / "aachen_000000_000019_gtFine_color.png"
    cv2.imwrite(str(path), np.zeros((2, 2, 3), np.uint8))
    sample = CityscapesSample("train", "aachen", "aachen_000000_000019", image, path, "labelIds")
    with pytest.raises(CityscapesError, match="single-channel") as error:
        read_train_ids(sample)
    assert str(path) in str(error.value)


def test_train_id_files_are_used_only_without_label_ids(tree: Path) -> None:
    city = tree / "gtFine/train/aachen"
    label_ids = city / "aachen_000000_000019_gtFine_labelIds.png"
    train_ids = city / "aachen_000000_000019_gtFine_labelTrainIds.png"
    converted = LABEL_ID_TO_TRAIN_ID[cv2.imread(str(label_ids), cv2.IMREAD_UNCHANGED)]
    cv2.imwrite(str(train_ids), converted)

    first = discover(tree, ["train"])["train"][0]
    assert (first.label_kind, first.label_path) == ("labelIds", label_ids)

    label_ids.unlink()
    first = discover(tree, ["train"])["train"][0]
    assert (first.label_kind, first.label_path) == ("labelTrainIds", train_ids)
    assert validate([first]) == ([first], [])
    assert np.array_equal(read_train_ids(first), converted)
