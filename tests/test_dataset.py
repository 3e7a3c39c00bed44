"""feedbackseg.data.dataset: the Dataset over turbsim shards."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from feedbackseg.data.dataset import DataError, ShardDataset, pixel_counts, resized_shape
from turbsim import shards
from turbsim.pipeline.generate import generate
from turbsim.pipeline.plan import make_plan
from turbsim.pipeline.recipe import resolve_recipe
from turbsim.sources.synthetic import write_sample_tree


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("cs")
    write_sample_tree(src, n=3, height=64, width=128, seed=0)
    out = tmp_path_factory.mktemp("shards") / "out"
    recipe = resolve_recipe(None, {"compression": "lzf", "shard_size": 2, "cn2": 1e-13})
    generate(make_plan(src, recipe), out)
    return out


def _stored(root: Path, split: str) -> list[dict]:
    items = []
    for entry in shards.read_manifest(root)["shards"]:
        if entry["split"] == split:
            with shards.ShardReader(root / entry["file"]) as reader:
                items += [reader[i] for i in range(len(reader))]
    return items


def test_items_round_trip_the_stored_arrays(shard_dir: Path) -> None:
    ds = ShardDataset(shard_dir, "train")
    stored = _stored(shard_dir, "train")
    assert len(ds) == len(stored) == 3 and ds.image_size == (64, 128)
    for i, ref in enumerate(stored):
        item = ds[i]
        assert item["distorted"].dtype == torch.float32 and item["label"].dtype == torch.int64
        assert item["distorted"].shape == (3, 64, 128) and item["label"].shape == (64, 128)
        np.testing.assert_array_equal(
            (item["clean"] * 255).round().byte().permute(1, 2, 0).numpy(), ref["clean"]
        )
        np.testing.assert_array_equal(item["label"].numpy(), ref["label"])
        assert item["name"] == ref["name"] and item["index"] == i
    with pytest.raises(IndexError):
        ds[3]


def test_resize_keeps_aspect_and_nearest_labels(shard_dir: Path) -> None:
    assert resized_shape((1024, 2048), 224) == (224, 448)
    assert resized_shape((64, 128), None) == (64, 128)
    ds = ShardDataset(shard_dir, "train", height=32)
    item = ds[0]
    assert item["distorted"].shape == (3, 32, 64) and ds.image_size == (32, 64)
    full = ShardDataset(shard_dir, "train")[0]["label"]
    assert set(item["label"].unique().tolist()) <= set(full.unique().tolist())


def test_augmentation_is_identical_across_arrays_and_per_sample(shard_dir: Path) -> None:
    plain = ShardDataset(shard_dir, "train")
    aug = ShardDataset(shard_dir, "train", augment=True, crop=(32, 64), seed=5)
    for i in range(len(aug)):
        a, p = aug[i], plain[i]
        # find the crop: the augmented label must appear in the plain one (maybe flipped)
        found = False
        for flip in (False, True):
            lab = p["label"].flip(-1) if flip else p["label"]
            dis = p["distorted"].flip(-1) if flip else p["distorted"]
            for top in range(0, 33):
                for left in range(0, 65):
                    if torch.equal(lab[top : top + 32, left : left + 64], a["label"]) and (
                        torch.equal(dis[:, top : top + 32, left : left + 64], a["distorted"])
                    ):
                        found = True
                        break
                if found:
                    break
            if found:
                break
        assert found, i
    again = ShardDataset(shard_dir, "train", augment=True, crop=(32, 64), seed=5)
    assert torch.equal(again[0]["distorted"], aug[0]["distorted"])
    draws = set()
    for epoch in range(6):
        aug.set_epoch(epoch)
        draws.add(aug[0]["distorted"].sum().item())
    assert len(draws) > 1  # a new epoch gives new augmentations
    with pytest.raises(ValueError, match="larger"):
        ShardDataset(shard_dir, "train", augment=True, crop=(128, 64))


def test_pickles_and_works_in_spawned_workers(shard_dir: Path) -> None:
    ds = ShardDataset(shard_dir, "val")
    first = ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._readers == {}
    assert torch.equal(clone[0]["distorted"], first["distorted"])
    loader = torch.utils.data.DataLoader(
        ds, batch_size=2, num_workers=2, multiprocessing_context="spawn"
    )
    batches = list(loader)
    names = [n for b in batches for n in b["name"]]
    assert names == [ds[i]["name"] for i in range(len(ds))]
    assert torch.equal(batches[0]["label"][0], first["label"])


def test_void_class_layout_and_pixel_counts(shard_dir: Path) -> None:
    ds20 = ShardDataset(shard_dir, "train", num_classes=20)
    ds19 = ShardDataset(shard_dir, "train")
    lab19, lab20 = ds19[0]["label"], ds20[0]["label"]
    assert torch.equal(lab20[lab19 != 255], lab19[lab19 != 255])
    assert torch.all(lab20[lab19 == 255] == 19)
    counts = pixel_counts(shard_dir, "train")
    labels = torch.stack([ds19[i]["label"] for i in range(len(ds19))])
    assert counts.dtype == torch.int64 and counts.shape == (19,)
    assert int(counts.sum()) == int((labels != 255).sum())
    assert int(counts[0]) == int((labels == 0).sum())
    assert int(pixel_counts(shard_dir, "train", 20).sum()) == labels.numel()


def test_missing_or_foreign_folders_are_named(shard_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such shard folder"):
        ShardDataset(tmp_path / "nope", "train")
    with pytest.raises(DataError, match="manifest"):
        ShardDataset(tmp_path, "train")
    with pytest.raises(DataError, match="no split 'test'"):
        ShardDataset(shard_dir, "test")


def test_pixel_counts_reads_only_labels_and_passes_locking(
    shard_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = pixel_counts(shard_dir, "train")
    opened: list[bool | None] = []
    real_init = shards.ShardReader.__init__

    def recording_init(self, path, locking=None) -> None:
        opened.append(locking)
        real_init(self, path, locking=locking)

    def no_samples(self, index):
        raise AssertionError("pixel_counts decoded a whole sample (both RGB images)")

    monkeypatch.setattr(shards.ShardReader, "__init__", recording_init)
    monkeypatch.setattr(shards.ShardReader, "__getitem__", no_samples)
    counts = pixel_counts(shard_dir, "train", locking=False)
    assert torch.equal(counts, expected)  # same counts as the stored labels give
    assert opened and all(flag is False for flag in opened)  # one False per shard file
    assert len(opened) == 2  # 3 samples in shards of 2


def test_return_params_gives_the_recorded_physics_and_collates(shard_dir: Path) -> None:
    plain = ShardDataset(shard_dir, "train")
    assert set(plain[0]) == {"distorted", "clean", "label", "name", "index"}  # default unchanged
    ds = ShardDataset(shard_dir, "train", height=32, return_params=True)
    stored = _stored(shard_dir, "train")
    for i, ref in enumerate(stored):
        item = ds[i]
        assert item["params"] == ref["params"] and item["variant"] == int(ref["variant"])
        assert item["params"]["cn2"] == pytest.approx(1e-13)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["params"]["cn2"].shape == (2,) and batch["variant"].tolist() == [0, 0]
