"""Evaluation (feedbackseg.evaluation.evaluate, ``fbseg eval``), comparison (``fbseg compare``) and
the training-curve / bar-chart pictures (feedbackseg.evaluation.plots, ``fbseg plot``).

Tiny data: 5 val samples of 64 x 128 in two shards (shard size 4), small networks, checkpoints
written here with the trainer's :func:`save_checkpoint` contract.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import feedbackseg.evaluation.evaluate as evaluate_module
from feedbackseg.data.cityscapes_labels import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    colorize_train_ids,
)
from feedbackseg.data.dataset import ShardDataset
from feedbackseg.evaluation.evaluate import (
    EvalError,
    comparison_markdown,
    evaluate,
    evaluate_checkpoint,
    load_result,
)
from feedbackseg.evaluation.metrics import ConfusionMatrix
from feedbackseg.models import build_model
from feedbackseg.runs.checkpoints import save_checkpoint
from turbsim.pipeline.generate import generate
from turbsim.pipeline.plan import make_plan
from turbsim.pipeline.recipe import resolve_recipe
from turbsim.sources.synthetic import write_sample_tree
from turbsim_cli.fbseg_cmd import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VAL_SAMPLES = 5


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """1 train and 5 val samples of 64 x 128 (val in two shards of 4 + 1)."""
    tmp = tmp_path_factory.mktemp("eval-shards")
    per_split = {"train": 1, "val": VAL_SAMPLES}
    write_sample_tree(tmp / "cs", n=1, height=64, width=128, seed=0, per_split=per_split)
    recipe = resolve_recipe(None, {"compression": "lzf", "shard_size": 4, "cn2": 1e-13})
    generate(make_plan(tmp / "cs", recipe), tmp / "shards")
    return tmp / "shards"


def write_checkpoint(path: Path, mode: str, iterations: int = 2, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build_model(mode, 19, small=True)
    config = {"height": 64, "iterations": iterations, "num_classes": 19}
    payload = {"mode": mode, "num_classes": 19, "small": True, "model": model.state_dict()}
    save_checkpoint(path, {**payload, "config": config, "step": 7})
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("eval-ckpt")
    return {m: write_checkpoint(tmp / f"{m}.pt", m) for m in ("feedback", "erfnet")}


def _valid_pixels(dataset) -> int:
    return sum(int((dataset[i]["label"] != 255).sum()) for i in range(len(dataset)))


class _WithIgnored(torch.utils.data.Dataset):
    """Shard samples with ignored pixels (255) added: a band of rows and every 7th pixel (the
    synthetic scenes label every pixel). With ``label_as_image`` the red channel carries the
    label (label / 255), for an oracle model."""

    def __init__(self, dataset: ShardDataset, label_as_image: bool = False) -> None:
        self.dataset = dataset
        self.image_size = dataset.image_size
        self.label_as_image = label_as_image

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        label = item["label"].clone()
        label[: 3 + index] = 255
        label.view(-1)[::7] = 255
        item["label"] = label
        if self.label_as_image:
            item["distorted"] = item["distorted"].clone()
            item["distorted"][0] = label.float() / 255.0
        return item


class _Oracle(nn.Module):
    """Logits one-hot at (label + shift) mod 19, the label read off the red channel."""

    def __init__(self, shift: int = 0) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        label = (x[:, 0] * 255.0).round().long()
        label = torch.where(label == 255, torch.zeros_like(label), (label + self.shift) % 19)
        return nn.functional.one_hot(label, 19).permute(0, 3, 1, 2).float()


def _cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], result.output


# ------------------------------------------------------------------------------ evaluate()
def test_confusion_counts_every_valid_pixel_once(shards, checkpoints):
    dataset = _WithIgnored(ShardDataset(shards, "val"))
    model = build_model("erfnet", 19, small=True)
    result = evaluate(model, dataset, batch_size=2)
    assert result.samples == VAL_SAMPLES == len(dataset)
    assert result.resolution == (64, 128)
    valid = _valid_pixels(dataset)
    assert 0 < valid < VAL_SAMPLES * 64 * 128
    assert result.confusion.total == valid
    # the batch size does not change what is counted (eval mode: deterministic per image)
    single = evaluate(model, dataset, batch_size=1)
    np.testing.assert_array_equal(single.confusion.matrix, result.confusion.matrix)


def test_resized_evaluation_states_its_resolution(shards):
    dataset = ShardDataset(shards, "val", height=32)
    result = evaluate(build_model("erfnet", 19), dataset)
    assert result.resolution == (32, 64)
    assert result.confusion.total == _valid_pixels(dataset)
    assert result.to_dict()["resolution"] == [32, 64]
    assert "32x64" in result.report()


def test_oracle_scores_one_and_a_wrong_oracle_zero(shards):
    dataset = _WithIgnored(ShardDataset(shards, "val"), label_as_image=True)
    perfect = evaluate(_Oracle(), dataset, batch_size=2)
    assert perfect.miou == 1.0 and perfect.pixel_accuracy == 1.0
    present = set()
    for i in range(len(dataset)):
        label = dataset[i]["label"]
        present |= set(label[label != 255].unique().tolist())
    per_class = perfect.to_dict()["per_class"]
    assert list(per_class) == list(CITYSCAPES_CLASSES)
    for c, name in enumerate(CITYSCAPES_CLASSES):  # absent classes are n/a, not 0
        assert per_class[name] == (1.0 if c in present else None), name
    wrong = evaluate(_Oracle(shift=1), dataset)
    assert wrong.pixel_accuracy == 0.0 and wrong.miou == 0.0


def test_per_iteration_entries(shards):
    dataset = ShardDataset(shards, "val")
    for iterations in (1, 3):
        result = evaluate(build_model("feedback", 19, small=True), dataset, iterations=iterations)
        assert len(result.miou_per_iteration) == iterations
        assert result.miou_per_iteration[-1] == result.miou
        assert len(result.to_dict()["miou_per_iteration"]) == iterations
    for mode in ("erfnet", "restore-seg"):
        result = evaluate(build_model(mode, 19, small=True), dataset, iterations=3)
        assert len(result.miou_per_iteration) == 1
        assert "per feedback iteration" not in result.report()


def test_twenty_class_model_ignores_the_void_class(shards):
    """The original's 20-class layout: the void logit is never predicted, void labels skipped."""
    dataset = ShardDataset(shards, "val", num_classes=20)

    class VoidLover(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(x.shape[0], 20, *x.shape[2:])
            logits[:, 19] = 10.0  # void wins the argmax over 20 classes
            logits[:, 2] = 1.0
            return logits

    result = evaluate(VoidLover(), dataset)
    assert result.confusion.total == _valid_pixels(ShardDataset(shards, "val"))
    assert result.confusion.matrix[:, 2].sum() == result.confusion.total  # all "building"


def test_ranks_split_samples_without_duplicates(shards, monkeypatch):
    """indices[rank::world]: the ranks' matrices add up to the single-process one (5 samples on
    2 ranks: a padding sampler would count one image twice)."""
    dataset = ShardDataset(shards, "val")
    model = build_model("erfnet", 19)
    whole = evaluate(model, dataset)
    monkeypatch.setattr(ConfusionMatrix, "all_reduce", lambda self, group=None: self)
    parts = []
    for rank in range(2):
        monkeypatch.setattr(evaluate_module, "world", lambda rank=rank: (rank, 2))
        parts.append(evaluate(model, dataset))
    assert [p.samples for p in parts] == [3, 2]
    np.testing.assert_array_equal(
        parts[0].confusion.matrix + parts[1].confusion.matrix, whole.confusion.matrix
    )


def test_evaluate_checkpoint_is_what_fbseg_eval_reports(shards, checkpoints, tmp_path):
    """One call loads, opens the split at the checkpoint's height and evaluates; the CLI prints
    its report and writes its dict, key for key."""
    evaluation = evaluate_checkpoint(checkpoints["feedback"], shards, "val", device="cpu")
    assert (evaluation.mode, evaluation.iterations, evaluation.step) == ("feedback", 2, 7)
    assert evaluation.result.resolution == (64, 128)
    assert evaluation.result.samples == VAL_SAMPLES
    out = tmp_path / "eval.json"
    cli = _cli("eval", checkpoints["feedback"], shards, "--json", out, "--device", "cpu")
    assert cli.exit_code == 0, cli.output
    assert cli.stdout.startswith(evaluation.report())  # the bar and notices: on stderr
    data = json.loads(out.read_text())
    restoration = data.pop("restoration")  # a model with R: its restoration diagnostics too
    assert restoration["mode"] == "feedback" and "psnr_gain_db" in restoration
    assert list(data) == list(evaluation.to_dict())
    assert data == json.loads(json.dumps(evaluation.to_dict()))
    assert list(data)[-4:] == ["shards", "mode", "iterations", "step"]
    assert data["checkpoint"] == str(checkpoints["feedback"])
    with pytest.raises(EvalError, match="40 is not a multiple of 16") as caught:
        evaluate_checkpoint(checkpoints["feedback"], shards, height=40)
    assert caught.value.key == "height"
    once = evaluate_checkpoint(checkpoints["erfnet"], shards, height=32, iterations=3)
    assert once.iterations == 1 and once.result.resolution == (32, 64)


def test_evaluate_takes_the_training_models_in_memory(shards, checkpoints):
    """What the trainer's validation passes: a bare model of build_model, in train mode, with
    its parts (R, S) shared with the optimisers. The result equals the checkpoint's and the
    model is left in eval mode."""
    from feedbackseg.evaluation.inference import load_model
    from feedbackseg.models import model_parts

    dataset = ShardDataset(shards, "val")
    for mode in ("feedback", "erfnet"):
        saved, _ = load_model(checkpoints[mode])
        model = build_model(mode, 19, small=True)
        model.load_state_dict(saved.state_dict())
        model.train()
        restorer, segmenter = model_parts(model)
        result = evaluate(model, dataset, iterations=2, batch_size=2)
        assert not model.training and not segmenter.training
        assert restorer is None or not restorer.training
        reference = evaluate_checkpoint(checkpoints[mode], shards, "val", device="cpu").result
        np.testing.assert_array_equal(result.confusion.matrix, reference.confusion.matrix)
        assert result.miou_per_iteration == reference.miou_per_iteration


# ------------------------------------------------------------------------------ fbseg eval
def test_cli_eval_reports_resolution_iterations_and_json(shards, checkpoints, tmp_path):
    out = tmp_path / "eval.json"
    result = _cli("eval", checkpoints["feedback"], shards, "--json", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    text = result.output
    assert "64x128" in text
    assert "t=1" in text and "t=2" in text and "t=3" not in text  # T = 2 from the checkpoint
    data = json.loads(out.read_text())
    assert set(CITYSCAPES_CLASSES) == set(data["per_class"])
    assert data["resolution"] == [64, 128] and data["samples"] == VAL_SAMPLES
    assert len(data["miou_per_iteration"]) == 2 and data["mode"] == "feedback"
    assert f"mIoU {100 * data['miou']:.2f} %" in text
    road = data["per_class"]["road"]
    assert any(ln.startswith("| road") and f"{100 * road:.2f}" in ln for ln in text.splitlines())
    assert not list(tmp_path.glob("*.tmp"))

    again = _cli("eval", checkpoints["feedback"], shards, "--height", "32", "--iterations", "1")
    assert again.exit_code == 0, again.output
    assert "32x64" in again.output and "per feedback iteration" not in again.output


def test_cli_eval_saves_palette_predictions(shards, checkpoints, tmp_path):
    preds = tmp_path / "preds"
    result = _cli("eval", checkpoints["erfnet"], shards, "--save-predictions", preds)
    assert result.exit_code == 0, result.output
    dataset = ShardDataset(shards, "val")
    names = [dataset[i]["name"] for i in range(len(dataset))]
    assert sorted(p.name for p in preds.iterdir()) == sorted(f"{n}.png" for n in names)
    palette = {tuple(c) for c in CITYSCAPES_PALETTE.tolist()}
    from turbsim._files import default_mode

    for path in preds.iterdir():
        assert path.stat().st_mode & 0o777 == default_mode()  # not mkstemp's 0600
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        assert rgb.shape == (64, 128, 3)
        assert {tuple(c) for c in np.unique(rgb.reshape(-1, 3), axis=0).tolist()} <= palette
    # the first file is exactly the palette image of the model's prediction (RGB, not BGR)
    from feedbackseg.evaluation.evaluate import load_model

    model, _ = load_model(checkpoints["erfnet"])
    with torch.no_grad():
        ids = model(dataset[0]["distorted"][None]).argmax(1)[0].numpy()
    rgb = cv2.cvtColor(cv2.imread(str(preds / f"{names[0]}.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(rgb, colorize_train_ids(ids))


def test_cli_eval_refuses_bad_inputs_in_one_line(shards, checkpoints, tmp_path):
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"decoder.w": torch.zeros(2)}}, foreign)
    _one_line_error(_cli("eval", foreign, shards), "foreign.pth", "not an fbseg")
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    _one_line_error(_cli("eval", text, shards), "notes.pt")
    _one_line_error(_cli("eval", tmp_path / "none.pt", shards), "none.pt")
    _one_line_error(_cli("eval", checkpoints["erfnet"], shards, "--split", "test"), "'test'")
    _one_line_error(_cli("eval", checkpoints["erfnet"], tmp_path / "nowhere"), "nowhere")
    bad_height = _cli("eval", checkpoints["feedback"], shards, "--height", "40")
    _one_line_error(bad_height, "--height", "16")
    assert bad_height.exit_code == 2


# ------------------------------------------------------------------------------ compare
def _eval_json(path: Path, road: float, sky: float | None, miou: float) -> Path:
    per_class = {name: None for name in CITYSCAPES_CLASSES}
    per_class.update({"road": road, "sky": sky})
    data = {"miou": miou, "pixel_accuracy": 0.9, "per_class": per_class, "resolution": [64, 128]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _row(table: str, name: str) -> list[str]:
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == name:
            return cells[1:]
    raise AssertionError(f"no row {name!r} in\n{table}")


def test_compare_two_json_results(tmp_path):
    a = _eval_json(tmp_path / "base.json", road=0.5, sky=0.25, miou=0.375)
    b = _eval_json(tmp_path / "fb" / "eval.json", road=0.9123, sky=None, miou=0.9123)
    md = tmp_path / "table.md"
    result = _cli("compare", a, b, "--markdown", md)
    assert result.exit_code == 0, result.output
    table = result.output
    header = _row(table, "class")
    assert header == ["base", "fb"]  # file stem; folder name for .../eval.json
    assert _row(table, "road") == ["50.00", "91.23"]
    assert _row(table, "sky") == ["25.00", "n/a"]
    assert _row(table, "**mIoU**") == ["37.50", "91.23"]
    assert _row(table, "resolution (HxW)") == ["64x128", "64x128"]
    assert table.startswith(md.read_text())


def test_compare_reads_a_run_folder_and_refuses_junk(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    records = [
        {"kind": "train", "step": 1, "loss_seg": 2.0, "loss_l1": 0.1},
        {"kind": "val", "step": 1, "val_miou": 0.1, "per_class": {"road": 0.1}},
        {"kind": "val", "step": 2, "val_miou": 0.2, "per_class": {"road": 0.4},
         "val_resolution": [32, 64]},
    ]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert load_result(run)["miou"] == 0.2
    table = comparison_markdown({"run": load_result(run)})
    assert _row(table, "road") == ["40.00"] and _row(table, "resolution (HxW)") == ["32x64"]
    junk = tmp_path / "junk.json"
    junk.write_text('{"hello": 1}')
    _one_line_error(_cli("compare", junk), "junk.json", "per_class")
    _one_line_error(_cli("compare", tmp_path / "missing"), "missing")


# ------------------------------------------------------------------------------ pictures
def _training_run(root: Path) -> Path:
    run = root / "run"
    run.mkdir()
    lines = []
    for step in range(1, 11):
        lines.append({"kind": "train", "step": step, "loss_seg": 3.0 / step, "loss_l1": 0.1,
                      "lr_s": 5e-4, "unknown_key": "x"})  # fmt: skip
        if step % 5 == 0:
            lines.append({"kind": "val", "step": step, "val_miou": 0.02 * step, "per_class": {}})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run


def _assert_png(path: Path, shape: tuple[int, int] | None = None) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = cv2.imread(str(path))
    assert image is not None and image.ndim == 3
    if shape is not None:
        assert image.shape[:2] == shape
    assert image.std() > 0  # something was drawn


def test_plots_write_valid_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    from feedbackseg.evaluation.plots import plot_per_class_iou, plot_training_curves

    run = _training_run(tmp_path)
    _assert_png(plot_training_curves(run, tmp_path / "curves.png"), (360, 900))
    results = {"a": {"road": 0.5, "sky": None}, "b": {"road": 0.7, "sky": 0.2}}
    _assert_png(plot_per_class_iou(results, tmp_path / "bars.png"))
    result = _cli("plot", run, "--out", tmp_path / "cli.png")
    assert result.exit_code == 0, result.output
    _assert_png(tmp_path / "cli.png", (360, 900))
    a = _eval_json(tmp_path / "a.json", 0.5, 0.1, 0.3)
    result = _cli("compare", a, a, "--png", tmp_path / "cmp.png")
    assert result.exit_code == 0, result.output
    _assert_png(tmp_path / "cmp.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "metrics.jsonl").write_text('{"step": 1, "lr_s": 0.1}\n')
    _one_line_error(_cli("plot", empty, "--out", tmp_path / "x.png"), "empty")
    assert not (tmp_path / "x.png").exists()


def test_without_matplotlib_the_commands_say_what_to_install(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    run = _training_run(tmp_path)
    hint = "pip install 'turbsim-feedbackseg[viz]'"
    _one_line_error(_cli("plot", run, "--out", tmp_path / "c.png"), hint)
    a = _eval_json(tmp_path / "a.json", 0.5, 0.1, 0.3)
    _one_line_error(_cli("compare", a, "--png", tmp_path / "b.png"), hint)
    assert not (tmp_path / "c.png").exists() and not (tmp_path / "b.png").exists()
    assert math.isclose(load_result(a)["miou"], 0.3)  # the table itself needs no matplotlib
