"""feedbackseg.evaluation.metrics.ConfusionMatrix: hand-computed IoU, ignore, merge, chunked
accumulation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from feedbackseg.data.cityscapes_labels import colorize_train_ids
from feedbackseg.evaluation.metrics import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, ConfusionMatrix

# 3 classes, 10 pixels (+2 ignored). Confusion (rows GT, cols pred):
#   GT 0: pred 0,0,0,1        -> [3, 1, 0]
#   GT 1: pred 1,1,2          -> [0, 2, 1]
#   GT 2: pred 2,0,2          -> [1, 0, 2]
# IoU0 = 3 / (4 + 4 - 3) = 3/5, IoU1 = 2 / (3 + 3 - 2) = 1/2, IoU2 = 2 / (3 + 3 - 2) = 1/2.
TARGET = np.array([[0, 0, 0, 0, 1, 1], [1, 2, 2, 2, 255, 255]])
PRED = np.array([[0, 0, 0, 1, 1, 1], [2, 2, 0, 2, 1, 0]])


def test_hand_computed_three_class_example():
    cm = ConfusionMatrix(num_classes=3)
    cm.update(torch.from_numpy(PRED), torch.from_numpy(TARGET))
    np.testing.assert_array_equal(cm.matrix, [[3, 1, 0], [0, 2, 1], [1, 0, 2]])
    assert cm.matrix.dtype == np.int64 and cm.total == 10
    np.testing.assert_allclose(cm.iou(), [3 / 5, 1 / 2, 1 / 2], rtol=1e-15)
    assert cm.miou() == pytest.approx((3 / 5 + 1 / 2 + 1 / 2) / 3, rel=1e-15)
    assert cm.pixel_accuracy() == pytest.approx(7 / 10, rel=1e-15)


def test_numpy_and_torch_inputs_agree():
    a, b = ConfusionMatrix(3), ConfusionMatrix(3)
    a.update(PRED, TARGET)
    b.update(torch.from_numpy(PRED).to(torch.uint8), torch.from_numpy(TARGET).int())
    np.testing.assert_array_equal(a.matrix, b.matrix)


def test_ignored_pixels_are_not_counted_whatever_the_prediction():
    cm = ConfusionMatrix(3)
    target = np.full((2, 2), 255)
    target[0, 0] = 1
    cm.update(np.array([[1, 0], [2, 2]]), target)
    assert cm.total == 1 and cm.matrix[1, 1] == 1
    cm2 = ConfusionMatrix(3, ignore_index=-1)
    cm2.update(np.array([0, 1, 2]), np.array([-1, 1, -1]))
    assert cm2.total == 1


def test_absent_classes_are_nan_and_excluded_from_mean():
    cm = ConfusionMatrix(4)
    cm.update(np.array([0, 0, 1, 0]), np.array([0, 0, 1, 1]))
    iou = cm.iou()
    assert math.isnan(iou[2]) and math.isnan(iou[3])
    np.testing.assert_allclose(iou[:2], [2 / 3, 1 / 2])
    assert cm.miou() == pytest.approx((2 / 3 + 1 / 2) / 2)
    # A class only predicted (never in GT) is present: IoU 0, counted in the mean.
    cm.update(np.array([3]), np.array([0]))
    assert cm.iou()[3] == 0.0 and not math.isnan(cm.iou()[3])
    assert cm.miou() == pytest.approx((2 / 4 + 1 / 2 + 0.0) / 3)


def test_empty_matrix():
    cm = ConfusionMatrix(3)
    assert math.isnan(cm.miou()) and math.isnan(cm.pixel_accuracy())
    d = cm.as_dict(["a", "b", "c"])
    assert d["miou"] is None and d["per_class"] == {"a": None, "b": None, "c": None}


def test_merge_equals_update_on_concatenation(rng):
    p1, t1 = rng.integers(0, 5, (3, 7)), rng.integers(0, 5, (3, 7))
    p2, t2 = rng.integers(0, 5, (4, 7)), rng.integers(0, 5, (4, 7))
    t2[0] = 255
    one = ConfusionMatrix(5)
    one.update(np.concatenate([p1, p2]), np.concatenate([t1, t2]))
    a, b = ConfusionMatrix(5), ConfusionMatrix(5)
    a.update(p1, t1)
    b.update(p2, t2)
    total = a + b
    np.testing.assert_array_equal(total.matrix, one.matrix)
    assert a.total == 21  # __add__ leaves its operands alone
    assert a.merge(b) is a
    np.testing.assert_array_equal(a.matrix, one.matrix)
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(ConfusionMatrix(4))


def test_all_reduce_without_distributed_is_a_no_op():
    cm = ConfusionMatrix(3)
    cm.update(PRED, TARGET)
    before = cm.matrix.copy()
    assert cm.all_reduce() is cm
    np.testing.assert_array_equal(cm.matrix, before)


def _all_reduce_worker(rank: int, world: int, init_file: str, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cm = ConfusionMatrix(3)
        # rank 0 sees the first row of the example, rank 1 the second
        cm.update(PRED[rank], TARGET[rank])
        cm.all_reduce()
        queue.put((rank, cm.matrix.tolist()))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_sums_across_two_gloo_ranks(tmp_path):
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    init_file = str(tmp_path / "dist_init")
    mp.start_processes(
        _all_reduce_worker, args=(2, init_file, queue), nprocs=2, start_method="spawn"
    )
    results = dict(queue.get() for _ in range(2))
    expected = [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
    assert results == {0: expected, 1: expected}


@pytest.mark.parametrize("bad", [3, -1, 255])
def test_predictions_outside_range_raise(bad):
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=rf"predictions outside \[0, 3\): \[{bad}\]"):
        cm.update(np.array([0, bad]), np.array([0, 1]))
    assert cm.total == 0  # nothing half-added


def test_bad_targets_shapes_and_dtypes_raise():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"targets outside \[0, 3\).*\[7\]"):
        cm.update(np.array([0, 1]), np.array([0, 7]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 2), int), np.zeros((4,), int))
    with pytest.raises(TypeError, match="integer"):
        cm.update(np.zeros(3), np.zeros(3, int))
    with pytest.raises(TypeError, match="integer"):
        cm.update(torch.zeros(3), torch.zeros(3, dtype=torch.long))


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(st.integers(0, 4 * 6 - 1), min_size=0, max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=5),
)
def test_chunked_accumulation_equals_one_shot(data, cuts):
    """Pixels encoded as target * 6 + pred; target 3 means ignore (mapped to 255)."""
    codes = np.array(data, dtype=np.int64)
    target, pred = codes // 6 % 4, codes % 6
    target = np.where(target == 3, 255, target)
    pred = np.minimum(pred, 4)
    one = ConfusionMatrix(5)
    one.update(pred, target)
    chunked = ConfusionMatrix(5)
    bounds = [0, *sorted(min(c, len(codes)) for c in cuts), len(codes)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        chunked.update(torch.from_numpy(pred[lo:hi]), torch.from_numpy(target[lo:hi]))
    np.testing.assert_array_equal(chunked.matrix, one.matrix)
    assert one.total == int(np.sum(target != 255))
    np.testing.assert_array_equal(one.iou(), chunked.iou())  # NaN positions included


def test_as_dict_and_markdown():
    cm = ConfusionMatrix(3)
    cm.update(PRED, TARGET)
    d = json.loads(json.dumps(cm.as_dict(["x", "y", "z"])))
    assert d["miou"] == pytest.approx(8 / 15) and d["pixel_accuracy"] == pytest.approx(0.7)
    assert d["per_class"] == pytest.approx({"x": 0.6, "y": 0.5, "z": 0.5})
    table = cm.to_markdown_table(["x", "y", "z"])
    assert "| x              |   60.00 |" in table
    assert "53.33" in table and "70.00" in table
    cm19 = ConfusionMatrix()
    cm19.update(np.array([0, 1]), np.array([0, 0]))
    d19 = cm19.as_dict()
    assert list(d19["per_class"]) == list(CITYSCAPES_CLASSES)
    assert d19["per_class"]["road"] == 0.5 and d19["per_class"]["bicycle"] is None
    assert "| bicycle        |     n/a |" in cm19.to_markdown_table()
    with pytest.raises(ValueError, match="class names"):
        cm.as_dict(["only one"])


def test_cityscapes_constants():
    assert len(CITYSCAPES_CLASSES) == 19
    assert CITYSCAPES_CLASSES[0] == "road" and CITYSCAPES_CLASSES[18] == "bicycle"
    assert CITYSCAPES_CLASSES[11] == "person" and CITYSCAPES_CLASSES[16] == "train"
    assert CITYSCAPES_PALETTE.shape == (19, 3) and CITYSCAPES_PALETTE.dtype == np.uint8
    assert CITYSCAPES_PALETTE[0].tolist() == [128, 64, 128]
    assert CITYSCAPES_PALETTE[13].tolist() == [0, 0, 142]
    assert CITYSCAPES_PALETTE[18].tolist() == [119, 11, 32]
    assert len({tuple(c) for c in CITYSCAPES_PALETTE.tolist()}) == 19
    rgb = colorize_train_ids(np.array([[0, 18], [255, 19]], dtype=np.uint8))
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [128, 64, 128] and rgb[0, 1].tolist() == [119, 11, 32]
    assert rgb[1].tolist() == [[0, 0, 0], [0, 0, 0]]


#: The 19 evaluated classes of the official table (cityscapesScripts helpers/labels.py):
#: train id -> (name, colour, label id).
OFFICIAL = [
    ("road", (128, 64, 128), 7), ("sidewalk", (244, 35, 232), 8),
    ("building", (70, 70, 70), 11), ("wall", (102, 102, 156), 12),
    ("fence", (190, 153, 153), 13), ("pole", (153, 153, 153), 17),
    ("traffic light", (250, 170, 30), 19), ("traffic sign", (220, 220, 0), 20),
    ("vegetation", (107, 142, 35), 21), ("terrain", (152, 251, 152), 22),
    ("sky", (70, 130, 180), 23), ("person", (220, 20, 60), 24), ("rider", (255, 0, 0), 25),
    ("car", (0, 0, 142), 26), ("truck", (0, 0, 70), 27), ("bus", (0, 60, 100), 28),
    ("train", (0, 80, 100), 31), ("motorcycle", (0, 0, 230), 32),
    ("bicycle", (119, 11, 32), 33),
]  # fmt: skip


def test_cityscapes_constants_are_the_official_table():
    """Names, palette and label ids against the official table; both packages' colourisers
    (two implementations) agree on every train id and on ignore."""
    from feedbackseg.data.cityscapes_labels import TRAIN_ID_TO_LABEL_ID
    from turbsim.sources.cityscapes import colorize_train_ids as ts

    assert list(CITYSCAPES_CLASSES) == [name for name, _, _ in OFFICIAL]
    np.testing.assert_array_equal(CITYSCAPES_PALETTE, [colour for _, colour, _ in OFFICIAL])
    assert [int(TRAIN_ID_TO_LABEL_ID[t]) for t in range(19)] == [i for _, _, i in OFFICIAL]
    labels = np.array([list(range(19)) + [255]], dtype=np.uint8)
    np.testing.assert_array_equal(colorize_train_ids(labels), ts(labels))
    np.testing.assert_array_equal(colorize_train_ids(labels)[0, :19], CITYSCAPES_PALETTE)
