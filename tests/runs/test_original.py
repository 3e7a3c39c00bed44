"""Importing the original releases' weight files: files in each original layout are built here
from our key mapping (``module.`` prefixes, PyTorch 0.3 style without ``num_batches_tracked``)
and must load into networks that compute exactly what the source network computes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from checkpoint_helpers import original_style, randomise_bn
from click.testing import CliRunner
from torch import nn

from feedbackseg.models import ERFNet, Restorer
from feedbackseg.models.erfnet import Encoder
from feedbackseg.runs.checkpoints import (
    CheckpointError,
    OriginalCheckpointWarning,
    import_original,
    import_original_info,
    load_pretrained_encoder,
)
from turbsim_cli.fbseg_cmd import main as fbseg


class NotWeights:
    """A custom class: a file pickling it needs arbitrary code to load."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def bmvc_segmentation_state(net: ERFNet) -> dict:
    """Our ERFNet's weights in the BMVC 2020 layout (layers.7..14 -> f_layers.0..7, plus the
    four unused trans_block modules)."""
    state = {}
    for key, value in original_style(net.state_dict(), prefix="").items():
        match = re.match(r"encoder\.layers\.(\d+)\.(.*)", key)
        if match and int(match.group(1)) >= 7:
            key = f"encoder.f_layers.{int(match.group(1)) - 7}.{match.group(2)}"
        state["module." + key] = value
    for i in range(1, 5):  # TransBlockRes(128): conv(256 -> 128), BN, ReLU, conv, BN
        unused = nn.Sequential(
            nn.Conv2d(256, 128, 3, padding=1),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.Conv2d(128, 128, 3, padding=1),
            nn.BatchNorm2d(128),
        )
        for key, value in original_style(unused.state_dict(), prefix="").items():
            state[f"module.encoder.trans_block{i}.main.{key}"] = value
    return state


def same_outputs(a: nn.Module, b: nn.Module, *inputs: torch.Tensor) -> None:
    a.eval()
    b.eval()
    with torch.no_grad():
        torch.testing.assert_close(a(*inputs), b(*inputs), rtol=0, atol=0)


def image(h: int = 32, w: int = 48) -> torch.Tensor:
    return torch.rand(2, 3, h, w)


# -------------------------------------------------------------------- the four file kinds
def test_erfnet_pretrained_round_trip(tmp_path: Path) -> None:
    net = ERFNet(num_classes=20, encoder_head=True)
    randomise_bn(net)
    path = tmp_path / "erfnet_pretrained.pth"
    # The pre-1.6 (non-zip) serialisation format, as the 2017 release was written.
    torch.save(original_style(net.state_dict()), path, _use_new_zipfile_serialization=False)
    info = import_original_info(path)
    assert (info.kind, info.num_classes) == ("erfnet", 20)
    assert info.config == {"num_classes": 20, "encoder_head": True}
    assert not info.module.training
    same_outputs(info.module, net, image())
    with torch.no_grad():
        torch.testing.assert_close(
            info.module.forward_encoder_logits(image(16, 16).fill_(0.5)),
            net.forward_encoder_logits(image(16, 16).fill_(0.5)),
        )


def test_bmvc_segmentation_round_trip_ignores_trans_blocks(tmp_path: Path) -> None:
    net = ERFNet(num_classes=20)
    randomise_bn(net)
    path = tmp_path / "model_best.pth"
    torch.save(bmvc_segmentation_state(net), path)
    with pytest.warns(OriginalCheckpointWarning, match=r"ignored the unused modules.*trans_block1"):
        info = import_original_info(path)
    assert (info.kind, info.num_classes) == ("erfnet", 20)
    assert info.config == {"num_classes": 20, "encoder_head": False}
    assert any("trans_block4" in note for note in info.notes)
    same_outputs(info.module, net, image())


def test_bmvc_restorer_round_trip(tmp_path: Path) -> None:
    net = Restorer(base_width=4, depth=3, num_classes=20)
    randomise_bn(net)
    path = tmp_path / "rmodel_best.pth"
    torch.save(original_style(net.state_dict()), path)
    info = import_original_info(path)
    assert (info.kind, info.num_classes) == ("restorer", 20)
    assert info.config == {
        "in_channels": 3,
        "base_width": 4,
        "depth": 3,
        "num_classes": 20,
        "feedback": True,
        "feedback_scale": 1e-3,
        "max_flow_px": 10.0,
    }
    delta = torch.randn(2, 20, 32, 48)
    same_outputs(info.module, net, image(), delta, image())


def test_restorer_without_feedback_block(tmp_path: Path) -> None:
    net = Restorer(base_width=4, depth=4, feedback=False)
    path = tmp_path / "rmodel.pth"
    torch.save({"state_dict": original_style(net.state_dict()), "epoch": 3}, path)
    info = import_original_info(path)
    assert info.kind == "restorer" and info.num_classes is None
    assert info.config["feedback"] is False and info.config["depth"] == 4
    same_outputs(info.module, net, image())


def test_imagenet_encoder_round_trip(tmp_path: Path) -> None:
    encoder = Encoder(num_classes=None)
    randomise_bn(encoder)
    state = original_style(encoder.state_dict(), prefix="module.features.encoder.")
    state["module.classifier.linear.weight"] = torch.randn(1000, 128)
    state["module.classifier.linear.bias"] = torch.randn(1000)
    path = tmp_path / "erfnet_encoder_pretrained.pth.tar"
    torch.save({"epoch": 90, "arch": "ERFNet", "best_prec1": 72.0, "state_dict": state}, path)
    with pytest.warns(OriginalCheckpointWarning, match="ImageNet classifier"):
        imported = import_original(path)
    assert isinstance(imported, Encoder) and imported.output_conv is None
    same_outputs(imported, encoder, image())

    segmenter = ERFNet(num_classes=19)
    decoder_before = {k: v.clone() for k, v in segmenter.decoder.state_dict().items()}
    with pytest.warns(OriginalCheckpointWarning):
        load_pretrained_encoder(segmenter, path)
    same_outputs(segmenter.encoder, encoder, image())
    torch.testing.assert_close(segmenter.decoder.state_dict(), decoder_before)


def test_pretrained_encoder_must_come_from_an_erfnet_file(tmp_path: Path) -> None:
    path = tmp_path / "rmodel_best.pth"
    torch.save(original_style(Restorer(base_width=4, depth=2).state_dict()), path)
    with pytest.raises(CheckpointError, match="holds a restorer, not an ERFNet encoder"):
        load_pretrained_encoder(ERFNet(), path)


def test_files_keep_num_batches_tracked_when_present(tmp_path: Path) -> None:
    net = ERFNet(num_classes=7)
    net.encoder.initial_block.bn.num_batches_tracked.fill_(123)
    path = tmp_path / "modern.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    module = import_original(path)
    assert module.encoder.initial_block.bn.num_batches_tracked.item() == 123
    assert module.num_classes == 7


# --------------------------------------------------------------------------- refusals
def test_missing_and_unexpected_keys_are_listed(tmp_path: Path) -> None:
    state = original_style(ERFNet(num_classes=20).state_dict())
    del state["module.decoder.layers.1.bn1.weight"]
    state["module.decoder.extra.weight"] = torch.zeros(3)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        import_original(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert "missing 1 keys: decoder.layers.1.bn1.weight" in message
    assert "unexpected 1 keys: decoder.extra.weight" in message


def test_wrong_shapes_are_named(tmp_path: Path) -> None:
    state = original_style(Restorer(base_width=4, depth=3, num_classes=20).state_dict())
    state["module.last.weight"] = torch.zeros(3, 4, 1, 1)
    path = tmp_path / "rmodel.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"shapes do not fit.*last\.weight \(3, 4, 1, 1\)"):
        import_original(path)


def test_arbitrary_pickles_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    state = original_style(ERFNet(num_classes=20).state_dict())
    torch.save({"state_dict": state, "extra": NotWeights()}, path)
    with pytest.raises(CheckpointError) as error:
        import_original(path)
    assert str(error.value) == (
        f"{path}: needs arbitrary code to unpickle (it pickles test_original.NotWeights), "
        "not a plain weights file; refused"
    )


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ({"module.fc.weight": torch.zeros(2, 2)}, "unrecognised layout"),
        ({"state_dict": {"a": 1}}, "not a state dict"),
        ([torch.zeros(1)], "holds no state dict"),
    ],
)
def test_unrecognised_files_are_refused(tmp_path: Path, content, match: str) -> None:
    path = tmp_path / "other.pth"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=match):
        import_original(path)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        import_original(tmp_path / "absent.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="not a readable torch weights file") as error:
        import_original(corrupt)
    assert "\n" not in str(error.value)


def test_original_import_lives_apart_with_its_names_kept() -> None:
    """original.py holds the import of the original files; every name stays importable from
    feedbackseg.runs.checkpoints (the same objects), and original.py does not import checkpoints.py
    (checkpoints -> original -> weights, no cycle)."""
    import ast

    import feedbackseg.runs.checkpoints as checkpoints
    import feedbackseg.runs.original as original
    import feedbackseg.runs.weights as weights

    for name in original.__all__:
        assert getattr(checkpoints, name) is getattr(original, name), name
    assert checkpoints.CheckpointError is original.CheckpointError is weights.CheckpointError
    assert checkpoints.export_state_dict is weights.export_state_dict
    for module in (original, weights):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "feedbackseg.runs.checkpoints" not in imported, module.__name__


# -------------------------------------------------------------------------------- CLI
def test_cli_import_checkpoint_writes_our_format(tmp_path: Path) -> None:
    net = Restorer(base_width=4, depth=3, num_classes=20)
    randomise_bn(net)
    source, dest = tmp_path / "rmodel_best.pth", tmp_path / "restorer.pt"
    torch.save(original_style(net.state_dict()), source)
    result = CliRunner().invoke(fbseg, ["import-checkpoint", str(source), str(dest)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{source}: restorer, 20 classes; wrote {dest}"
    saved = torch.load(dest, map_location="cpu", weights_only=True)
    assert (saved["kind"], saved["num_classes"]) == ("restorer", 20)
    rebuilt = Restorer(**saved["config"])
    rebuilt.load_state_dict(saved["state_dict"])
    delta = torch.randn(2, 20, 32, 48)
    same_outputs(rebuilt, net, image(), delta, image())
    assert {p.name for p in tmp_path.iterdir()} == {"rmodel_best.pth", "restorer.pt"}  # no temp


def test_cli_import_checkpoint_reports_ignored_modules(tmp_path: Path) -> None:
    source, dest = tmp_path / "model_best.pth", tmp_path / "erfnet.pt"
    torch.save(bmvc_segmentation_state(ERFNet(num_classes=20)), source)
    result = CliRunner().invoke(fbseg, ["import-checkpoint", str(source), str(dest)])
    assert result.exit_code == 0, result.output
    assert "note: model_best.pth: ignored the unused modules encoder.{trans_block1" in result.stderr
    saved = torch.load(dest, map_location="cpu", weights_only=True)
    assert saved["kind"] == "erfnet" and saved["config"]["encoder_head"] is False


@pytest.mark.parametrize("case", ["missing", "pickle"])
def test_cli_import_checkpoint_errors_are_one_line(tmp_path: Path, case: str) -> None:
    source, dest = tmp_path / "in.pth", tmp_path / "out.pt"
    if case == "pickle":
        torch.save({"x": NotWeights()}, source)
    result = CliRunner().invoke(fbseg, ["import-checkpoint", str(source), str(dest)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    expected = "no such file" if case == "missing" else "needs arbitrary code to unpickle"
    assert len(lines) == 1 and lines[0].startswith(f"Error: {source}: ") and expected in lines[0]
    assert not dest.exists()
