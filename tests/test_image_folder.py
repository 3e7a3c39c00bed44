"""`turbsim generate --images DIR`: any folder of PNG/JPEG images (with or without labels)
through plan, generate, verify and resume; label maps; the usage errors of the new flags."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from shards_samples import stored_samples

from turbsim import shards
from turbsim.pipeline.generate import generate
from turbsim.pipeline.image_folder import discover_folder, image_stem, make_folder_plan
from turbsim.pipeline.plan import GenerateError
from turbsim.pipeline.recipe import resolve_recipe
from turbsim.sources.cityscapes import LABEL_ID_TO_TRAIN_ID, CityscapesError
from turbsim.sources.jpeg import check_jpeg, jpeg_size
from turbsim.sources.label_map import LabelMapError, read_label_map_file, resolve_label_map
from turbsim_cli.turbsim_cmd import main

H, W = 40, 72
FAST = {"size": None, "compression": "lzf"}


def _image(seed: int, height: int = H, width: int = W) -> np.ndarray:
    """A smooth colour image (BGR uint8) that JPEG keeps close to itself."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 6, 3)
    channels = [127 + 100 * np.sin(xx / (7 + 3 * c) + yy / 11 + phase[c]) for c in range(3)]
    return np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)


def _write(path: Path, array: np.ndarray, *params: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array, list(params))
    return path


def _label(seed: int, values: list[int], dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(np.array(values, dtype), size=(H, W))


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory) -> Path:
    """A flat folder of JPEGs (one nested), one of them progressive, no labels."""
    root = tmp_path_factory.mktemp("photos")
    _write(root / "IMG_0001.jpg", _image(1), cv2.IMWRITE_JPEG_QUALITY, 95)
    _write(root / "IMG_0002.JPEG", _image(2), cv2.IMWRITE_JPEG_QUALITY, 90)
    _write(root / "day two" / "shot.jpg", _image(3), cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    (root / ".hidden.jpg").write_bytes(b"not an image")  # hidden: never read
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> tuple[Path, Path, dict[tuple[str, str], np.ndarray]]:
    """images/{train,val}/city/*.png|jpg and labels/{train,val}/city/*.png (trainIds)."""
    base = tmp_path_factory.mktemp("labelled")
    truth = {}
    for k, (split, rel) in enumerate(
        [("train", "a/x1"), ("train", "a/x2"), ("train", "b/y1"), ("val", "a/z1")]
    ):
        ext = ".jpg" if k % 2 else ".png"
        _write(base / "images" / split / f"{rel}{ext}", _image(10 + k))
        label = _label(k, [0, 1, 2, 7, 13, 18, 255])
        _write(base / "labels" / split / f"{rel}.png", label)
        truth[(split, image_stem(rel + ext))] = label
    return base / "images", base / "labels", truth


def _cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


# --------------------------------------------------------------------------------- the plan
def test_stems_are_relative_paths_without_extension() -> None:
    assert image_stem("IMG_0001.jpg") == "IMG_0001"
    assert image_stem("day two/shot.jpg") == "day two__shot"
    assert image_stem("a/b/c.d.png") == "a__b__c.d"


def test_jpeg_header_gives_the_decoded_size(jpeg_folder: Path) -> None:
    for path in sorted(jpeg_folder.rglob("*.[jJ]*")):
        if path.name.startswith("."):
            continue
        decoded = cv2.imread(str(path))
        assert jpeg_size(path) == decoded.shape[:2], path
        assert check_jpeg(path).components == 3


def test_truncated_jpeg_is_named_and_skippable(jpeg_folder: Path, tmp_path: Path) -> None:
    data = (jpeg_folder / "IMG_0001.jpg").read_bytes()
    (tmp_path / "good.jpg").write_bytes(data)
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(CityscapesError, match=r"cut\.jpg: truncated \(no EOI"):
        check_jpeg(tmp_path / "cut.jpg")
    recipe = resolve_recipe(None, {**FAST, "splits": ["train"]})
    with pytest.raises(CityscapesError, match="cut.jpg"):
        make_folder_plan(tmp_path, recipe)
    plan = make_folder_plan(tmp_path, recipe, skip_bad=True)
    assert [s.stem for t in plan.tasks for s in t.samples] == ["good"]
    assert [Path(s.path).name for s in plan.skipped] == ["cut.jpg"]


def test_flat_folder_plan(jpeg_folder: Path) -> None:
    recipe = resolve_recipe(None, {**FAST, "splits": ["train"], "variants": 2})
    plan = make_folder_plan(jpeg_folder, recipe)
    stems = sorted({s.stem for t in plan.tasks for s in t.samples})
    assert stems == ["IMG_0001", "IMG_0002", "day two__shot"]
    assert plan.n_samples == 6
    assert plan.recipe.input == {"layout": "image-folder", "label_map": "none"}
    assert plan.recipe.digest() != recipe.digest()  # the input conventions are in the hash
    assert plan.source["files"]["train"]["day two__shot"] == "day two/shot.jpg"
    with pytest.raises(GenerateError, match="--splits NAME") as raised:
        make_folder_plan(jpeg_folder, resolve_recipe(None, FAST))  # train and val
    assert raised.value.key == "splits"


def test_split_folders_partly_present_is_refused(labelled, tmp_path: Path) -> None:
    images, _, _ = labelled
    recipe = resolve_recipe(None, {**FAST, "splits": ["train", "test"]})
    with pytest.raises(GenerateError, match="no test/ folder"):
        make_folder_plan(images, recipe)


def test_two_images_with_one_stem_are_refused(tmp_path: Path) -> None:
    _write(tmp_path / "a.jpg", _image(0))
    _write(tmp_path / "a.png", _image(1))
    with pytest.raises(CityscapesError, match="has the stem 'a' of"):
        discover_folder(tmp_path, ["train"])


def test_mixed_sizes_need_a_stored_size(tmp_path: Path) -> None:
    _write(tmp_path / "a.png", _image(0))
    _write(tmp_path / "b.png", _image(1, H + 8, W + 8))
    with pytest.raises(GenerateError, match="different sizes") as raised:
        make_folder_plan(tmp_path, resolve_recipe(None, {**FAST, "splits": ["train"]}))
    assert raised.value.key == "size"
    recipe = resolve_recipe(None, {**FAST, "splits": ["train"], "size": [32, 48]})
    out = tmp_path / "out"
    generate(make_folder_plan(tmp_path, recipe), out)
    assert shards.verify(out) == []
    assert {item["distorted"].shape for item in stored_samples(out).values()} == {(32, 48, 3)}


# ------------------------------------------------------------------------------ label maps
def test_builtin_maps() -> None:
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    cityscapes = resolve_label_map("cityscapes").apply(values, "x.png")
    assert np.array_equal(cityscapes, LABEL_ID_TO_TRAIN_ID[values])
    trainids = resolve_label_map(None)
    ok = np.array([[0, 18, 255]], np.uint8)
    assert np.array_equal(trainids.apply(ok, "x.png"), ok)
    with pytest.raises(LabelMapError, match=r"x\.png: label values 19, 33 not in .*cityscapes"):
        trainids.apply(np.array([[19, 33, 0]], np.uint8), "x.png")


def test_map_file(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"1000": 0, "2000": 11, "default": 255}))
    mapping = read_label_map_file(path)
    label = np.array([[1000, 2000, 5, 65535]], np.uint16)
    assert mapping.apply(label, "l.png").tolist() == [[0, 11, 255, 255]]
    assert mapping.recipe_value() == {"table": [[1000, 0], [2000, 11]], "default": 255}
    for bad, message in [
        ("[1, 2]", "a label map is a JSON object"),
        ('{"7": 19}', "maps to 19"),
        ('{"x": 1}', "not a label value"),
        ('{"7": 1, "7": 2}', "listed twice"),
        ("{", "not JSON"),
    ]:
        path.write_text(bad)
        with pytest.raises(LabelMapError, match=message) as raised:
            read_label_map_file(path)
        assert raised.value.key == "label_map" and str(path) in str(raised.value)


# ----------------------------------------------------------------------- generate end to end
def test_unlabelled_jpegs_generate_verify_resume(jpeg_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["generate", "--images", jpeg_folder, "--out", out, "--splits", "train", "--size",
            "32x56", "--seed", "4", "--shard-size", "2", "--quiet"]  # fmt: skip
    first = _cli(*args)
    assert first.exit_code == 0, first.output
    assert _cli("verify", out).exit_code == 0
    manifest = shards.read_manifest(out)
    assert manifest["labels"]["train"].startswith("no labels (all 255)")
    assert manifest["source"]["layout"] == "image-folder" and manifest["source"]["labels"] is None
    stored = stored_samples(out)
    assert sorted(name for _, name, _ in stored) == ["IMG_0001", "IMG_0002", "day two__shot"]
    assert all((item["label"] == 255).all() for item in stored.values())
    # the stored clean image is the JPEG's pixels, resized
    clean = cv2.resize(cv2.imread(str(jpeg_folder / "IMG_0001.jpg")), (56, 32),
                       interpolation=cv2.INTER_AREA)[..., ::-1]  # fmt: skip
    assert np.abs(stored[("train", "IMG_0001", 0)]["clean"].astype(int) - clean).max() <= 1
    # resume: nothing re-rendered, same bytes; a second run with another seed is refused
    before = {p.name: p.read_bytes() for p in (out / "train").glob("*.h5")}
    resumed = _cli(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "0 shard(s) rendered" in resumed.output
    assert {p.name: p.read_bytes() for p in (out / "train").glob("*.h5")} == before
    # deterministic: a fresh run, two workers, gives the same arrays
    again = tmp_path / "again"
    assert _cli(*[again if a == out else a for a in args], "--workers", "2").exit_code == 0
    for key, item in stored_samples(again).items():
        for field in ("clean", "distorted", "label"):
            assert np.array_equal(item[field], stored[key][field]), (key, field)


def test_labelled_folder_keeps_its_labels(labelled, tmp_path: Path) -> None:
    images, labels, truth = labelled
    recipe = resolve_recipe(None, {**FAST, "seed": 2})
    out = tmp_path / "out"
    generate(make_folder_plan(images, recipe, labels=labels), out)
    assert shards.verify(out) == []
    stored = stored_samples(out)
    assert {(split, name) for split, name, _ in stored} == set(truth)
    for (split, name, _), item in stored.items():
        assert np.array_equal(item["label"], truth[(split, name)]), name
    manifest = shards.read_manifest(out)
    assert manifest["source"]["label_map"] == "trainids"
    assert manifest["source"]["files"]["train"]["a__x2"] == "a/x2.jpg"


def test_labelids_through_the_cityscapes_map(tmp_path: Path) -> None:
    label_ids = _label(5, [0, 4, 7, 8, 26, 33])
    _write(tmp_path / "img" / "a.png", _image(5))
    _write(tmp_path / "lab" / "a.png", label_ids)
    recipe = resolve_recipe(None, {**FAST, "splits": ["val"]})
    with pytest.raises(LabelMapError, match="use --label-map cityscapes"):
        generate(make_folder_plan(tmp_path / "img", recipe, labels=tmp_path / "lab"),
                 tmp_path / "wrong")  # fmt: skip
    assert not (tmp_path / "wrong" / "manifest.json").exists()
    out = tmp_path / "out"
    plan = make_folder_plan(tmp_path / "img", recipe, tmp_path / "lab", "cityscapes")
    generate(plan, out)
    (item,) = stored_samples(out).values()
    assert np.array_equal(item["label"], LABEL_ID_TO_TRAIN_ID[label_ids])


def test_sixteen_bit_labels_with_a_map_file(tmp_path: Path) -> None:
    raw = _label(6, [0, 1000, 2000], np.uint16)
    _write(tmp_path / "img" / "a.jpg", _image(6))
    _write(tmp_path / "lab" / "a.png", raw)
    (tmp_path / "map.json").write_text('{"0": 255, "1000": 0, "2000": 13}')
    recipe = resolve_recipe(None, {**FAST, "splits": ["train"]})
    out = tmp_path / "out"
    generate(make_folder_plan(tmp_path / "img", recipe, tmp_path / "lab", tmp_path / "map.json"),
             out)  # fmt: skip
    (item,) = stored_samples(out).values()
    expected = np.select([raw == 1000, raw == 2000], [0, 13], 255)
    assert np.array_equal(item["label"], expected)


def test_resume_with_another_label_map_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "img" / "a.png", _image(7))
    _write(tmp_path / "lab" / "a.png", _label(7, [7, 8]))
    out = tmp_path / "out"
    base = ["generate", "--images", tmp_path / "img", "--labels", tmp_path / "lab", "--out", out,
            "--splits", "train", "--quiet"]  # fmt: skip
    assert _cli(*base, "--label-map", "cityscapes").exit_code == 0
    result = _cli(*base, "--resume")  # trainids: another map
    assert result.exit_code == 1
    assert "label map cityscapes" in result.output and "label map trainids" in result.output


def test_bad_labels_are_named(tmp_path: Path) -> None:
    _write(tmp_path / "img" / "a.png", _image(8))
    _write(tmp_path / "img" / "b.png", _image(9))
    _write(tmp_path / "img" / "c.png", _image(10))
    _write(tmp_path / "lab" / "a.png", np.zeros((H, W, 3), np.uint8))  # colour
    _write(tmp_path / "lab" / "c.png", _label(10, [1, 2]))
    recipe = resolve_recipe(None, {**FAST, "splits": ["train"]})
    with pytest.raises(CityscapesError, match=r"a\.png: an RGB label image"):
        make_folder_plan(tmp_path / "img", recipe, tmp_path / "lab")
    plan = make_folder_plan(tmp_path / "img", recipe, tmp_path / "lab", skip_bad=True)
    assert [s.stem for t in plan.tasks for s in t.samples] == ["c"]
    # a: colour label; b: no label file
    assert [Path(s.path).relative_to(tmp_path).as_posix() for s in plan.skipped] == [
        "lab/a.png",
        "lab/b.png",
    ]


# --------------------------------------------------------------------------- usage errors
@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--cityscapes", "{tree}"], "--images"),
        (["--labels", "{tree}"], None),
        (["--label-map", "cityscapes"], "--labels"),
    ],
)
def test_flag_conflicts_exit_2(jpeg_folder: Path, tmp_path: Path, extra, flag) -> None:
    args = [a.replace("{tree}", str(tmp_path)) for a in extra]
    if flag is None:  # --labels without --images
        result = _cli("generate", "--cityscapes", tmp_path, *args, "--out", tmp_path / "o")
        flag = "--labels"
    else:
        result = _cli("generate", "--images", jpeg_folder, *args, "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert flag in result.output.splitlines()[-1]
    assert not (tmp_path / "o").exists()


def test_bad_map_file_exits_2_naming_the_flag(labelled, tmp_path: Path) -> None:
    images, labels, _ = labelled
    (tmp_path / "map.json").write_text('{"7": 40}')
    result = _cli("generate", "--images", images, "--labels", labels, "--label-map",
                  tmp_path / "map.json", "--out", tmp_path / "o")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--label-map" in result.output and "map.json" in result.output
    assert "Traceback" not in result.output


def test_missing_input_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CITYSCAPES_DATASET", raising=False)
    result = _cli("generate", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "--images" in result.output


def test_flat_folder_with_two_splits_exits_2_naming_splits(jpeg_folder: Path, tmp_path) -> None:
    result = _cli("generate", "--images", jpeg_folder, "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert "--splits" in result.output.splitlines()[-1]
