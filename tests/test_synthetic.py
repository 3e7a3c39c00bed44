"""turbsim.sources.synthetic: procedural scenes (classes, determinism, not palette-coded), the
Cityscapes-layout tree writer (layout, reproducibility, atomic writes) and its CLI command."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from turbsim.sources.cityscapes import (
    LABEL_ID_TO_TRAIN_ID,
    TRAIN_ID_PALETTE,
    CityscapesError,
    CityscapesWarning,
    discover,
    read_image_rgb,
    read_train_ids,
    validate,
)
from turbsim.sources.synthetic import (
    DEFAULT_CITIES,
    SCENE_LABEL_IDS,
    make_scene,
    scene_rng,
    write_sample_tree,
)
from turbsim_cli.turbsim_cmd import main as turbsim_cli

H, W = 64, 128
#: Classes drawn in every scene (the others - fence, terrain, street trees - only in some).
ALWAYS = {"road", "sidewalk", "building", "sky", "car", "person", "pole", "traffic sign"}
ALWAYS |= {"traffic light"}


def _scenes(count: int, height: int = H, width: int = W):
    return [make_scene(np.random.default_rng(seed), height, width) for seed in range(count)]


# ------------------------------------------------------------------------------ make_scene
def test_scene_shapes_and_valid_labels() -> None:
    rgb, label_ids = make_scene(np.random.default_rng(0), H, W)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert label_ids.shape == (H, W) and label_ids.dtype == np.uint8
    assert set(np.unique(label_ids).tolist()) <= set(SCENE_LABEL_IDS.values())
    assert (LABEL_ID_TO_TRAIN_ID[label_ids] != 255).all()  # every pixel is an evaluated class
    odd_rgb, odd_labels = make_scene(np.random.default_rng(0), 16, 17)
    assert odd_rgb.shape == (16, 17, 3) and odd_labels.shape == (16, 17)


def test_every_class_appears() -> None:
    seen: set[int] = set()
    for _, label_ids in _scenes(8):
        present = set(np.unique(label_ids).tolist())
        assert {SCENE_LABEL_IDS[name] for name in ALWAYS} <= present
        seen |= present
    assert seen == set(SCENE_LABEL_IDS.values())


def test_scene_layout_sits_on_the_ground() -> None:
    # Sky on top, road at the bottom centre, in every scene.
    for _, label_ids in _scenes(4):
        assert (label_ids[0] != SCENE_LABEL_IDS["road"]).all()
        assert SCENE_LABEL_IDS["sky"] in label_ids[: H // 3]
        assert SCENE_LABEL_IDS["sky"] not in label_ids[H // 2 :]
        bottom = label_ids[-1, W // 4 : 3 * W // 4]
        assert np.isin(bottom, [SCENE_LABEL_IDS["road"], SCENE_LABEL_IDS["car"]]).mean() > 0.5


def test_scene_is_deterministic() -> None:
    first = make_scene(np.random.default_rng(7), H, W)
    again = make_scene(np.random.default_rng(7), H, W)
    other = make_scene(np.random.default_rng(8), H, W)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[1], other[1])


def test_layout_does_not_depend_on_size() -> None:
    # The layout stream is the same at every size: a preview shows the same street.
    _, small = make_scene(np.random.default_rng(3), H, W)
    _, large = make_scene(np.random.default_rng(3), 2 * H, 2 * W)
    shrunk = cv2.resize(large, (W, H), interpolation=cv2.INTER_NEAREST)
    assert (shrunk == small).mean() > 0.85


def test_colours_do_not_encode_the_labels() -> None:
    rgb, label_ids = make_scene(np.random.default_rng(1), 2 * H, 2 * W)
    train_ids = LABEL_ID_TO_TRAIN_ID[label_ids]
    # The nearest palette colour is mostly not the class ...
    distance = ((rgb[:, :, None, :].astype(int) - TRAIN_ID_PALETTE.astype(int)) ** 2).sum(-1)
    assert (distance.argmin(-1) == train_ids).mean() < 0.4
    # ... and the classes are textured, with edges inside them (windows, markings, noise).
    for label in (SCENE_LABEL_IDS["road"], SCENE_LABEL_IDS["building"]):
        assert rgb[label_ids == label].std(axis=0).min() > 3.0
    gradient = np.abs(np.diff(rgb.astype(int), axis=1)).max(-1)
    assert (gradient > 40).mean() > 0.01


@pytest.mark.parametrize(("height", "width"), [(15, 64), (64, 8), (16.0, 64), (True, 64)])
def test_scene_rejects_bad_sizes(height, width) -> None:
    with pytest.raises(ValueError, match="height|width"):
        make_scene(np.random.default_rng(0), height, width)


# ------------------------------------------------------------------------------ write_sample_tree
def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_tree_layout_and_counts(tmp_path: Path) -> None:
    counts = write_sample_tree(tmp_path, 4, 32, 64, seed=1, splits=("train", "test"))
    assert counts == {"train": 4, "test": 4}
    files = sorted(_files(tmp_path))
    assert files == sorted(
        [
            "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png",
            "leftImg8bit/train/aachen/aachen_000001_000019_leftImg8bit.png",
            "leftImg8bit/train/bochum/bochum_000000_000019_leftImg8bit.png",
            "leftImg8bit/train/bremen/bremen_000000_000019_leftImg8bit.png",
            "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png",
            "gtFine/train/aachen/aachen_000001_000019_gtFine_labelIds.png",
            "gtFine/train/bochum/bochum_000000_000019_gtFine_labelIds.png",
            "gtFine/train/bremen/bremen_000000_000019_gtFine_labelIds.png",
            "leftImg8bit/test/berlin/berlin_000000_000019_leftImg8bit.png",
            "leftImg8bit/test/berlin/berlin_000001_000019_leftImg8bit.png",
            "leftImg8bit/test/bielefeld/bielefeld_000000_000019_leftImg8bit.png",
            "leftImg8bit/test/bonn/bonn_000000_000019_leftImg8bit.png",
        ]
    )


def test_per_split_counts_and_cities(tmp_path: Path) -> None:
    counts = write_sample_tree(
        tmp_path, 3, 16, 32, per_split={"val": 1}, cities={"train": ["ulm"], "val": ["jena"]}
    )
    assert counts == {"train": 3, "val": 1}
    found = discover(tmp_path, ["train", "val"])
    assert [s.stem for s in found["train"]] == [f"ulm_00000{i}_000019" for i in range(3)]
    assert [s.stem for s in found["val"]] == ["jena_000000_000019"]


def test_tree_round_trips_through_the_reader(tmp_path: Path) -> None:
    write_sample_tree(tmp_path, 3, 32, 64, seed=11, splits=("val", "test"))
    with pytest.warns(CityscapesWarning):
        found = discover(tmp_path, ["val", "test"])
    for split, samples in found.items():
        good, skipped = validate(samples)
        assert len(good) == 3 and skipped == []
        cities = DEFAULT_CITIES[split]
        for sample in samples:
            index = int(sample.stem.split("_")[1]) * len(cities) + cities.index(sample.city)
            rgb, label_ids = make_scene(scene_rng(11, split, index), 32, 64)
            assert np.array_equal(read_image_rgb(sample.image_path), rgb)  # lossless, RGB order
            if split == "test":
                expected = np.full(label_ids.shape, 255, np.uint8)
            else:
                expected = LABEL_ID_TO_TRAIN_ID[label_ids]
            assert np.array_equal(read_train_ids(sample), expected)


def test_tree_is_reproducible_per_sample(tmp_path: Path) -> None:
    write_sample_tree(tmp_path / "a", 4, 32, 64, seed=3)
    write_sample_tree(tmp_path / "b", 4, 32, 64, seed=3)
    write_sample_tree(tmp_path / "c", 2, 32, 64, seed=3, splits=("val",))
    write_sample_tree(tmp_path / "d", 4, 32, 64, seed=4)
    a, b, c, d = (_files(tmp_path / name) for name in "abcd")
    assert a == b  # same seed: identical bytes
    assert c and all(a[name] == data for name, data in c.items())  # any subset alone
    assert a.keys() == d.keys()
    assert all(a[name] != d[name] for name in a if name.startswith("leftImg8bit"))


def test_non_empty_output_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(CityscapesError, match="not empty") as error:
        write_sample_tree(tmp_path, 1, 16, 32)
    assert str(tmp_path) in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert write_sample_tree(tmp_path, 1, 16, 32, overwrite=True) == {"train": 1, "val": 1}
    assert (tmp_path / "keep.txt").read_text() == "user data"
    with pytest.raises(CityscapesError, match="not a directory"):
        write_sample_tree(tmp_path / "keep.txt", 1, 16, 32)


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_sample_tree(tmp_path / "out", 2, 16, 32)
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []
    monkeypatch.undo()
    write_sample_tree(tmp_path / "ok", 2, 16, 32)
    assert not [p for p in (tmp_path / "ok").rglob(".*")]  # no temporary files left


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"n": 0}, ValueError),
        ({"splits": ("train", "train")}, ValueError),
        ({"splits": ("train", "extra")}, ValueError),
        ({"splits": "train"}, TypeError),
        ({"seed": -1}, ValueError),
        ({"height": 8}, ValueError),
        ({"cities": {"train": ["Aachen"], "val": ["ulm"]}}, ValueError),
    ],
)
def test_tree_rejects_bad_arguments(tmp_path: Path, kwargs: dict, error: type) -> None:
    arguments = {"n": 1, "height": 16, "width": 32, **kwargs}
    with pytest.raises(error):
        write_sample_tree(tmp_path / "out", **arguments)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ CLI
def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_cli_writes_a_tree(tmp_path: Path) -> None:
    out = tmp_path / "tree"
    args = ["sample-cityscapes", str(out), "--n", "2", "--height", "32", "--width", "64"]
    result = CliRunner().invoke(turbsim_cli, [*args, "--seed", "9", "--splits", "train,test"])
    assert result.exit_code == 0, result.output
    assert _lines(result.output) == [
        f"wrote 2 train samples 32x64 (images + gtFine labelIds) under {out}",
        f"wrote 2 test samples 32x64 (images only, no public labels) under {out}",
    ]
    assert len(list((out / "leftImg8bit/train").rglob("*.png"))) == 2
    assert len(list((out / "gtFine/train").rglob("*.png"))) == 2
    assert len(list((out / "leftImg8bit/test").rglob("*.png"))) == 2
    assert not (out / "gtFine/test").exists()
    expected = make_scene(scene_rng(9, "train", 0), 32, 64)[0]
    image = out / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
    assert np.array_equal(read_image_rgb(image), expected)

    again = CliRunner().invoke(turbsim_cli, args)
    assert again.exit_code != 0
    assert _lines(again.output) == [
        f"Error: {out}: not empty (2 entries); refusing to write into it without overwrite "
        "(--overwrite)"
    ]
    assert CliRunner().invoke(turbsim_cli, [*args, "--overwrite"]).exit_code == 0


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--height", "8"], "'--height'"),
        (["--height", "1.5"], "'--height'"),
        (["--width", "abc"], "'--width'"),
        (["--n", "0"], "'--n'"),
        (["--splits", "train,bogus"], "'--splits'"),
        (["--splits", "train,train"], "'--splits'"),
    ],
)
def test_cli_refuses_bad_flags(tmp_path: Path, flags: list[str], named: str) -> None:
    out = tmp_path / "tree"
    result = CliRunner().invoke(turbsim_cli, ["sample-cityscapes", str(out), "--n", "1", *flags])
    assert result.exit_code == 2
    lines = _lines(result.output)
    assert len(lines) == 1 and named in lines[0] and lines[0].startswith("Error: ")
    assert not out.exists()


def test_scenes_are_unchanged_by_the_seeding_module() -> None:
    """sha256 of 9 scenes recorded from the code before scene_rng used turbsim.seeding."""
    digest = hashlib.sha256()
    for split in ("train", "val", "test"):
        for index in range(3):
            rgb, label_ids = make_scene(scene_rng(7, split, index), 32, 64)
            digest.update(rgb.tobytes())
            digest.update(label_ids.tobytes())
    assert digest.hexdigest() == (
        "959b521f390002896d4fda11418973858d9e9f6475a40cb2b7dc4d001db119a6"
    )
