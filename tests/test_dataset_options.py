"""ShardDataset(return_flow=..., return_params=...): the stored flow at the returned pixels,
the recorded physics, the default sample unchanged, and the error without a stored flow.

The shards are written by hand (turbsim.shards.ShardWriter) so that their flow is known
exactly: a constant field shows the scaling of a resize without any interpolation error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np
import pytest
import torch

from feedbackseg.data.dataset import DataError, ShardDataset
from turbsim import shards
from turbsim.shards import ShardWriter, shard_path

KEYS = ("cn2", "path_length_m", "wave")
#: The constant field of sample 0 [px]: (row, col).
ROW_PX, COL_PX = 3.0, 2.0


def _samples(height: int, width: int, n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if i == 0:
            flow = np.stack([np.full((height, width), ROW_PX), np.full((height, width), COL_PX)])
        else:  # float16 steps of at most 1/512 px below 2 px: the stored array is not this one
            flow = rng.normal(0, 1.5, (2, height, width))
        out.append(
            {
                "name": f"city_{i:06d}_000019",
                "distorted": rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                "clean": rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                "label": rng.choice(np.array([0, 7, 13, 18, 255], np.uint8), (height, width)),
                "params": {
                    "cn2": float(10 ** rng.uniform(-15, -12)),
                    "path_length_m": float(rng.uniform(500, 3000)),
                    "wave": "spherical" if i % 2 else "plane",
                },
                "variant": i % 2,
                "flow": flow.astype(np.float32),
            }
        )
    return out


def _write_folder(root: Path, height: int, width: int, store_flow: str | None, n: int = 3) -> Path:
    """One train shard of ``n`` samples (sample 0: the constant field) and its manifest."""
    path = shard_path(root, "train", 0)
    with ShardWriter(path, "train", 0, height, width, KEYS, store_flow=store_flow) as writer:
        for s in _samples(height, width, n, seed=height + width):
            writer.add(**{**s, "flow": s["flow"] if store_flow else None})
    assert writer.info is not None
    manifest = {
        "schema_version": shards.MANIFEST_SCHEMA_VERSION,
        "tool_version": "0.1.0",
        "created": "2025-01-01T00:00:00+00:00",
        "skipped": [],
        "shards": [writer.info.to_dict()],
    }
    shards.write_manifest(root, manifest)
    return root


@pytest.fixture(scope="module")
def flowed(tmp_path_factory) -> Path:
    """Stored at 32 x 256 px with a float16 flow: height 16 gives 16 x 128 (both axes / 2)."""
    return _write_folder(tmp_path_factory.mktemp("flowed"), 32, 256, "float16")


@pytest.fixture(scope="module")
def uneven(tmp_path_factory) -> Path:
    """Stored at 24 x 200 px, int16 flow: height 16 gives 16 x 128 (rows x 2/3, cols x 0.64)."""
    return _write_folder(tmp_path_factory.mktemp("uneven"), 24, 200, "int16")


@pytest.fixture(scope="module")
def flowless(tmp_path_factory) -> Path:
    return _write_folder(tmp_path_factory.mktemp("flowless"), 32, 256, None)


def _h5(root: Path) -> h5py.File:
    return h5py.File(shard_path(root, "train", 0), "r")


def test_flow_round_trips_the_stored_array_at_the_stored_size(flowed: Path, uneven: Path):
    for root in (flowed, uneven):
        ds = ShardDataset(root, "train", return_flow=True)
        with _h5(root) as f:
            scale = np.float32(f["flow"].attrs.get("scale", 1.0))
            stored = f["flow"][()].astype(np.float32) * scale
        assert ds.has_flow and len(ds) == 3
        for i in range(len(ds)):
            flow = ds[i]["flow"]
            assert flow.dtype == torch.float32 and flow.shape == (2, *ds.image_size)
            np.testing.assert_array_equal(flow.numpy(), stored[i])  # exact, no resampling
            np.testing.assert_array_equal(ds.flow(i), stored[i])
        np.testing.assert_array_equal(ds[0]["flow"][0].numpy(), ROW_PX)  # flow[0]: rows
        np.testing.assert_array_equal(ds[0]["flow"][1].numpy(), COL_PX)  # flow[1]: columns


def test_resized_flow_is_scaled_to_the_new_pixels(flowed: Path, uneven: Path):
    # 32 x 256 -> 16 x 128: 2 px at width 256 is 1 px at width 128, 3 px rows -> 1.5 px
    ds = ShardDataset(flowed, "train", height=16, return_flow=True)
    assert ds.image_size == (16, 128)
    flow = ds[0]["flow"]
    assert flow.shape == (2, 16, 128) and flow.dtype == torch.float32
    torch.testing.assert_close(flow[0], torch.full((16, 128), ROW_PX / 2), rtol=0, atol=1e-6)
    torch.testing.assert_close(flow[1], torch.full((16, 128), COL_PX / 2), rtol=0, atol=1e-6)
    # each axis by its own ratio: 24 x 200 -> 16 x 128 (rows x 2/3, columns x 0.64)
    ds = ShardDataset(uneven, "train", height=16, return_flow=True)
    assert ds.image_size == (16, 128)
    flow = ds[0]["flow"]
    np.testing.assert_allclose(flow[0].numpy(), ROW_PX * 16 / 24, rtol=0, atol=1e-5)
    np.testing.assert_allclose(flow[1].numpy(), COL_PX * 128 / 200, rtol=0, atol=1e-5)
    # a varying field: bilinear like the images, then scaled
    with _h5(uneven) as f:
        stored = f["flow"][1].astype(np.float32) * np.float32(f["flow"].attrs.get("scale", 1.0))
    rows = cv2.resize(stored[0], (128, 16), interpolation=cv2.INTER_LINEAR) * (16 / 24)
    cols = cv2.resize(stored[1], (128, 16), interpolation=cv2.INTER_LINEAR) * (128 / 200)
    np.testing.assert_allclose(ds[1]["flow"].numpy(), np.stack([rows, cols]), atol=1e-5)


def test_flow_is_flipped_with_the_images(flowed: Path):
    plain = ShardDataset(flowed, "train")
    aug = ShardDataset(flowed, "train", augment=True, seed=3, return_flow=True)
    flips = set()
    for epoch in range(12):
        aug.set_epoch(epoch)
        item = aug[0]
        flipped = torch.equal(item["clean"], plain[0]["clean"].flip(-1))
        assert flipped or torch.equal(item["clean"], plain[0]["clean"])
        flips.add(flipped)
        assert torch.all(item["flow"][0] == ROW_PX)
        assert torch.all(item["flow"][1] == (-COL_PX if flipped else COL_PX))
    assert flips == {False, True}


def test_params_are_what_the_shard_records_and_collate(flowed: Path):
    ds = ShardDataset(flowed, "train", height=16, return_flow=True, return_params=True)
    with _h5(flowed) as f:
        for i in range(len(ds)):
            item = ds[i]
            expected = {
                "cn2": float(f["params/cn2"][i]),
                "path_length_m": float(f["params/path_length_m"][i]),
                "wave": f["params/wave"].asstr()[i],
            }
            assert item["params"] == expected
            assert type(item["params"]["cn2"]) is float and type(item["params"]["wave"]) is str
            assert item["variant"] == int(f["variant"][i]) and type(item["variant"]) is int
    loader = torch.utils.data.DataLoader(ds, batch_size=3)
    batch = next(iter(loader))
    assert batch["flow"].shape == (3, 2, 16, 128) and batch["flow"].dtype == torch.float32
    assert batch["params"]["cn2"].dtype == torch.float64 and batch["params"]["cn2"].shape == (3,)
    assert batch["params"]["cn2"].tolist() == [ds[i]["params"]["cn2"] for i in range(3)]
    assert batch["params"]["wave"] == ["plane", "spherical", "plane"]  # strings: a list
    assert batch["variant"].tolist() == [0, 1, 0]


def _old_sample(item: dict[str, Any], size: tuple[int, int], index: int) -> dict[str, Any]:
    """A sample as ShardDataset built it before these options (no augmentation, 19 classes)."""
    h, w = size
    distorted, clean, label = item["distorted"], item["clean"], item["label"]
    if distorted.shape[:2] != (h, w):
        distorted = cv2.resize(distorted, (w, h), interpolation=cv2.INTER_LINEAR)
        clean = cv2.resize(clean, (w, h), interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)

    def chw(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255

    return {
        "distorted": chw(distorted),
        "clean": chw(clean),
        "label": torch.from_numpy(label.astype(np.int64)),
        "name": item["name"],
        "index": index,
    }


def test_the_default_sample_is_unchanged(flowed: Path):
    with shards.ShardReader(shard_path(flowed, "train", 0)) as reader:
        stored = [reader[i] for i in range(len(reader))]
    for height in (None, 16):
        ds = ShardDataset(flowed, "train", height=height)
        for i in range(len(ds)):
            item, old = ds[i], _old_sample(stored[i], ds.image_size, i)
            assert list(item) == ["distorted", "clean", "label", "name", "index"]
            assert [type(v) for v in item.values()] == [torch.Tensor] * 3 + [str, int]
            for key in ("distorted", "clean", "label"):
                assert item[key].dtype == old[key].dtype and torch.equal(item[key], old[key])
            assert item["name"] == old["name"] and item["index"] == i
    # the options add keys, nothing else: same arrays, same augmentation draws
    kwargs = {"height": 16, "augment": True, "crop": (8, 64), "seed": 9}
    plain = ShardDataset(flowed, "train", **kwargs)
    both = ShardDataset(flowed, "train", return_flow=True, return_params=True, **kwargs)
    for i in range(len(plain)):
        a, b = plain[i], both[i]
        assert set(b) - set(a) == {"flow", "params", "variant"}
        assert all(torch.equal(a[k], b[k]) for k in ("distorted", "clean", "label"))
        assert b["flow"].shape == (2, 8, 64)


def test_return_flow_without_a_stored_flow_is_one_line(flowless: Path):
    ds = ShardDataset(flowless, "train", return_flow=True)
    assert not ds.has_flow
    for read in (lambda: ds[0], lambda: ds.flow(0)):
        with pytest.raises(ValueError) as info:
            read()
        assert isinstance(info.value, DataError)
        message = str(info.value)
        assert "\n" not in message and str(flowless) in message
        assert "store no flow" in message and "--store-flow" in message
    plain = ShardDataset(flowless, "train", return_params=True)  # params need no flow
    assert "flow" not in plain[0] and plain[0]["params"]["wave"] == "plane"
