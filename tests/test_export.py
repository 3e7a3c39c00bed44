"""`turbsim export`: shards as Cityscapes-layout PNGs (read back with the layout rules of
mmsegmentation and detectron2, written out here) and as WebDataset tars; naming, the label
tables, the folder rules, interruption, and the command's exit codes and messages."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from shards_samples import make_sample, write_shard

from turbsim import _files, shards
from turbsim.pipeline.generate import generate
from turbsim.pipeline.plan import make_plan
from turbsim.pipeline.recipe import resolve_recipe
from turbsim.sources.cityscapes import LABEL_ID_TO_TRAIN_ID
from turbsim.sources.synthetic import write_sample_tree
from turbsim.views import export
from turbsim_cli.turbsim_cmd import main

Key = tuple[str, str, int]  # (split, stem, variant)


# ----------------------------------------------------------------------------------- datasets
@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[int, Path]:
    """variants -> shard folder: a synthetic tree (train 2, val 2 at 32 x 64) generated with 2
    variants (shards of 2 samples) and with 1."""
    tmp = tmp_path_factory.mktemp("export")
    write_sample_tree(tmp / "cs", n=2, height=32, width=64, seed=0)
    out = {}
    for variants in (2, 1):
        recipe = resolve_recipe(None, {"compression": "lzf", "variants": variants, "shard_size": 2})
        generate(make_plan(tmp / "cs", recipe), tmp / f"shards{variants}")
        out[variants] = tmp / f"shards{variants}"
    return out


def stored(root: Path) -> dict[Key, dict[str, Any]]:
    """Every sample of a shard folder keyed by (split, stem, variant)."""
    found = {}
    for split in shards.list_splits(root):
        for reader in shards.open_split(root, split):
            with reader:
                for item in reader:
                    found[(split, item["name"], item["variant"])] = item
    return found


def hand_built(root: Path, names: list[str]) -> Path:
    """A one-split ("train") shard folder of 8 x 12 random samples with these stems."""
    rng = np.random.default_rng(0)
    samples = [{**make_sample(rng, name), "variant": 0} for name in names]
    info = write_shard(root, "train", 0, samples)
    manifest = {"schema_version": shards.MANIFEST_SCHEMA_VERSION, "shards": [info.to_dict()]}
    shards.write_manifest(root, manifest)
    return root


# ---------------------------------------------------------------- the readers' layout rules
def read_png(path: Path) -> np.ndarray:
    """A PNG as stored: RGB (H, W, 3) for colour images, (H, W) for single-channel ones."""
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert pixels is not None, path
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB) if pixels.ndim == 3 else pixels


def mmseg_pairs(root: Path, split: str, images: str = "leftImg8bit") -> list[tuple[Path, Path]]:
    """mmsegmentation's CityscapesDataset: data_prefix=dict(img_path='leftImg8bit/{split}',
    seg_map_path='gtFine/{split}'), img_suffix='_leftImg8bit.png',
    seg_map_suffix='_gtFine_labelTrainIds.png'; images found recursively by suffix, the label at
    the same relative path with the suffix replaced."""
    img_dir, seg_dir = root / images / split, root / "gtFine" / split
    img_suffix, seg_suffix = "_leftImg8bit.png", "_gtFine_labelTrainIds.png"
    pairs = []
    for dirpath, _, filenames in os.walk(img_dir):
        for filename in filenames:
            if filename.endswith(img_suffix):
                rel = os.path.relpath(os.path.join(dirpath, filename), img_dir)
                pairs.append((img_dir / rel, seg_dir / (rel[: -len(img_suffix)] + seg_suffix)))
    return sorted(pairs)


def detectron2_pairs(image_dir: Path, gt_dir: Path) -> list[tuple[Path, Path]]:
    """detectron2's load_cityscapes_semantic(image_dir, gt_dir): one level of city folders,
    every file in one ends with "leftImg8bit.png", its label is
    gt_dir/city/basename.replace("leftImg8bit.png", "gtFine_labelTrainIds.png")."""
    pairs = []
    for city in sorted(os.listdir(image_dir)):
        for basename in sorted(os.listdir(image_dir / city)):
            assert basename.endswith("leftImg8bit.png"), basename
            label = basename.replace("leftImg8bit.png", "gtFine_labelTrainIds.png")
            pairs.append((image_dir / city / basename, gt_dir / city / label))
    assert pairs and pairs[0][1].is_file()
    return pairs


def check_cityscapes_export(out: Path, items: dict[Key, dict[str, Any]], tagged: bool) -> None:
    """Both readers find every sample; every array equals the shard's, byte for byte."""
    splits = sorted({split for split, _, _ in items})
    clean = (out / "leftImg8bit_clean").is_dir()
    for split in splits:
        mmseg = mmseg_pairs(out, split)
        d2 = detectron2_pairs(out / "leftImg8bit" / split, out / "gtFine" / split)
        assert sorted(d2) == mmseg
        expected = {(stem, k): item for (s, stem, k), item in items.items() if s == split}
        assert len(mmseg) == len(expected)
        for (stem, k), item in expected.items():
            city = stem.split("_")[0]
            name = f"{stem}_v{k}" if tagged else stem
            image = out / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png"
            label = out / "gtFine" / split / city / f"{name}_gtFine_labelTrainIds.png"
            assert (image, label) in mmseg
            np.testing.assert_array_equal(read_png(image), item["distorted"])
            np.testing.assert_array_equal(read_png(label), item["label"])
            label_ids = read_png(label.with_name(f"{name}_gtFine_labelIds.png"))
            evaluated = item["label"] != 255
            np.testing.assert_array_equal(
                LABEL_ID_TO_TRAIN_ID[label_ids][evaluated], item["label"][evaluated]
            )
            assert (label_ids[~evaluated] == 0).all()
            if clean:
                clean_image = out / "leftImg8bit_clean" / split / city / image.name
                np.testing.assert_array_equal(read_png(clean_image), item["clean"])
        if clean:
            assert len(mmseg_pairs(out, split, "leftImg8bit_clean")) == len(expected)


# ------------------------------------------------------------------------- Cityscapes layout
def test_two_variants_read_by_mmseg_and_detectron2(generated, tmp_path: Path) -> None:
    root = generated[2]
    items = stored(root)
    assert {k for _, _, k in items} == {0, 1}
    report = export.export_cityscapes(root, tmp_path / "out", clean=True)
    assert report.counts == {"train": 4, "val": 4} and report.files == 8 * 4 + 1
    check_cityscapes_export(tmp_path / "out", items, tagged=True)
    text = (tmp_path / "out" / "export.json").read_text()
    record = json.loads(text)
    assert record["source"]["recipe_hash"] == shards.read_manifest(root)["recipe_hash"]
    assert record["counts"] == {"train": 4, "val": 4} and record["format"] == "cityscapes"
    assert record["naming"]["name"] == "{stem}_v{variant}" and record["variants"] == [0, 1]
    assert str(tmp_path) not in text and str(root) not in text and "/tmp" not in text
    assert not [p for p in (tmp_path / "out").rglob("*") if _files.is_temporary(p)]


def test_one_variant_plain_names(generated, tmp_path: Path) -> None:
    export.export_cityscapes(generated[1], tmp_path / "out")
    check_cityscapes_export(tmp_path / "out", stored(generated[1]), tagged=False)
    assert not (tmp_path / "out" / "leftImg8bit_clean").exists()
    record = json.loads((tmp_path / "out" / "export.json").read_text())
    assert record["naming"]["name"] == "{stem}" and record["clean"] is False


def test_variant_selects_one_with_plain_names(generated, tmp_path: Path) -> None:
    items = {key: item for key, item in stored(generated[2]).items() if key[2] == 1}
    report = export.export_cityscapes(generated[2], tmp_path / "out", variant=1)
    assert report.counts == {"train": 2, "val": 2}
    check_cityscapes_export(tmp_path / "out", items, tagged=False)
    with pytest.raises(export.ExportError, match="no variant 2") as caught:
        export.export_cityscapes(generated[2], tmp_path / "other", variant=2)
    assert caught.value.key == "variant" and not (tmp_path / "other").exists()


def test_city_and_name_rules() -> None:
    assert export.city_and_name("aachen_000000_000019") == ("aachen", "aachen_000000_000019")
    assert export.city_and_name("aachen_000000_000019", 3) == ("aachen", "aachen_000000_000019_v3")
    assert export.city_and_name("frame7") == ("images", "frame7")
    assert export.city_and_name("_frame7") == ("images", "_frame7")
    assert export.city_and_name("site/cam1/frame_7") == ("site_cam1", "frame_7")
    assert export.webdataset_key("site/cam1/frame.7", 1) == "site/cam1/frame_7_v1"
    with pytest.raises(export.ExportError, match="cannot be a file name"):
        export.city_and_name("../etc/passwd")


def test_stems_from_folders_stay_one_level_deep(tmp_path: Path) -> None:
    names = ["frame7", "site/cam1/frame_8", "bochum_000001_000019"]
    root = hand_built(tmp_path / "shards", names)
    export.export_cityscapes(root, tmp_path / "out")
    pairs = detectron2_pairs(tmp_path / "out/leftImg8bit/train", tmp_path / "out/gtFine/train")
    assert sorted(mmseg_pairs(tmp_path / "out", "train")) == sorted(pairs)
    found = {p.relative_to(tmp_path / "out/leftImg8bit/train").as_posix() for p, _ in pairs}
    assert found == {
        "images/frame7_leftImg8bit.png",
        "site_cam1/frame_8_leftImg8bit.png",
        "bochum/bochum_000001_000019_leftImg8bit.png",
    }
    item = stored(root)[("train", "site/cam1/frame_8", 0)]
    image = tmp_path / "out/leftImg8bit/train/site_cam1/frame_8_leftImg8bit.png"
    np.testing.assert_array_equal(read_png(image), item["distorted"])


def test_two_stems_on_one_file_are_refused_before_writing(tmp_path: Path) -> None:
    root = hand_built(tmp_path / "shards", ["a/b/c", "a_b/c"])
    with pytest.raises(export.ExportError, match="'a/b/c' and 'a_b/c' both export as a_b/c"):
        export.export_cityscapes(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_label_tables_agree() -> None:
    from feedbackseg.data.cityscapes_labels import TRAIN_ID_TO_LABEL_ID

    table = export.TRAIN_ID_TO_LABEL_ID
    np.testing.assert_array_equal(table, TRAIN_ID_TO_LABEL_ID)
    train_ids = np.arange(19, dtype=np.uint8)
    np.testing.assert_array_equal(LABEL_ID_TO_TRAIN_ID[table[train_ids]], train_ids)
    assert table[255] == 0 and table[19:].max() == 0 and not table.flags.writeable


# ------------------------------------------------------------------------------ WebDataset
def test_webdataset_members_grouped_by_key(generated, tmp_path: Path) -> None:
    items = stored(generated[2])
    report = export.export_webdataset(generated[2], tmp_path / "out", clean=True)
    tars = sorted((tmp_path / "out").glob("*/*.tar"))
    assert [p.relative_to(tmp_path / "out").as_posix() for p in tars] == [
        "train/train-000000.tar", "train/train-000001.tar",
        "val/val-000000.tar", "val/val-000001.tar",
    ]  # fmt: skip
    assert report.files == 5 and report.counts == {"train": 4, "val": 4}
    seen = 0
    for path in tars:
        split = path.parent.name
        with tarfile.open(path) as tar:
            members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
        keys = [name.split(".", 1)[0] for name, _ in members]
        groups = [keys[i] for i in range(len(keys)) if i == 0 or keys[i] != keys[i - 1]]
        assert len(groups) == len(set(groups))  # one sample's members are consecutive
        for key in groups:
            sample = {n.split(".", 1)[1]: data for n, data in members if n.split(".")[0] == key}
            assert set(sample) == {"distorted.png", "clean.png", "labeltrainids.png", "json"}
            record = json.loads(sample["json"])
            item = items[(split, record["name"], record["variant"])]
            assert key == f"{record['name']}_v{record['variant']}"
            assert record["params"] == pytest.approx(item["params"])
            for member, field in [("distorted.png", "distorted"), ("clean.png", "clean"),
                                  ("labeltrainids.png", "label")]:  # fmt: skip
                decoded = np.frombuffer(io.BytesIO(sample[member]).read(), np.uint8)
                pixels = cv2.imdecode(decoded, cv2.IMREAD_UNCHANGED)
                if pixels.ndim == 3:
                    pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
                np.testing.assert_array_equal(pixels, item[field])
            seen += 1
    assert seen == len(items)
    assert json.loads((tmp_path / "out/export.json").read_text())["format"] == "webdataset"


# ------------------------------------------------------------------ folders and interruption
def test_overwrite_replaces_only_an_earlier_export(generated, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export.export_cityscapes(generated[2], out, clean=True)
    with pytest.raises(export.ExportError, match="not empty"):
        export.export_cityscapes(generated[1], out)
    export.export_cityscapes(generated[1], out, overwrite=True)  # no stale _v0 names remain
    check_cityscapes_export(out, stored(generated[1]), tagged=False)
    assert not (out / "leftImg8bit_clean").exists()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(export.ExportError, match="notes.txt: not written by turbsim export"):
        export.export_cityscapes(generated[1], out, overwrite=True)
    assert (out / "export.json").is_file() and (out / "notes.txt").read_text() == "mine"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "a.png").write_bytes(b"x")
    with pytest.raises(export.ExportError, match="not an earlier turbsim export"):
        export.export_cityscapes(generated[1], foreign, overwrite=True)
    assert (foreign / "a.png").read_bytes() == b"x"


@pytest.mark.parametrize("where", ["encoder", "publish"])
def test_interrupted_export_leaves_no_record_and_no_temporary(
    generated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A failure after a few files (the PNG encoder raising, or Ctrl-C while a temporary is
    being published): no export.json, no temporary, every PNG left is complete."""
    calls = {"n": 0}

    def failing(original):
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 7:
                raise KeyboardInterrupt if where == "publish" else ValueError("encoder broke")
            return original(*args, **kwargs)

        return wrapper

    if where == "encoder":
        monkeypatch.setattr(export, "encode_png", failing(export.encode_png))
    else:
        monkeypatch.setattr(_files, "_fsync_file", failing(_files._fsync_file))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt if where == "publish" else ValueError):
        export.export_cityscapes(generated[2], out)
    left = [p for p in out.rglob("*") if p.is_file()]
    assert not (out / "export.json").exists()
    assert not [p for p in left if _files.is_temporary(p)]
    pngs = [p for p in left if p.suffix == ".png"]
    assert 4 <= len(pngs) < 7
    assert all(cv2.imread(str(p), cv2.IMREAD_UNCHANGED) is not None for p in pngs)


# ------------------------------------------------------------------------------ the command
def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["export", *map(str, args)])


def test_command_writes_and_reports(generated, tmp_path: Path) -> None:
    result = run(generated[1], "--out", tmp_path / "out", "--quiet", "--clean")
    assert result.exit_code == 0, result.output
    assert "4 samples (train 2, val 2)" in result.output and "export.json" in result.output
    assert (tmp_path / "out/leftImg8bit_clean/val").is_dir()


def test_command_user_errors_are_one_line(generated, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    result = run(missing, "--out", tmp_path / "out")
    assert result.exit_code == 1 and result.output == f"Error: {missing}: no such folder\n"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    result = run(generated[1], "--out", tmp_path / "full")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert f"{tmp_path / 'full'}: not empty" in result.output and "--overwrite" in result.output
    broken = tmp_path / "broken"
    shutil.copytree(generated[1], broken)
    with open(broken / "train" / "shard-00000.h5", "ab") as stream:
        stream.write(b"junk")
    result = run(broken, "--out", tmp_path / "out2")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "shard-00000.h5: size" in result.output and not (tmp_path / "out2").exists()


@pytest.mark.parametrize(
    ("args", "flag"),
    [(["--format", "coco"], "'--format'"), (["--variant", "-1"], "'--variant'"),
     (["--variant", "3"], "'--variant'")],
)  # fmt: skip
def test_command_usage_errors_name_the_flag(generated, tmp_path, args, flag) -> None:
    result = run(generated[2], "--out", tmp_path / "out", *args)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and flag in result.output
    assert not (tmp_path / "out").exists()
