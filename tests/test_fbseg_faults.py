"""``fbseg`` under faults and hostile input (issue 11): one line naming the flag, path or shard,
a non-zero exit, no traceback, nothing lost; tiny shards, --small, CPU."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch
from click.testing import CliRunner

import feedbackseg.runs.rundir as rundir_module
import feedbackseg.runs.weights as weights_module
import feedbackseg.training.train as train_module
from feedbackseg.config import ConfigError, resolve_config
from feedbackseg.data.dataset import DataError, ShardDataset, pixel_counts
from feedbackseg.runs.checkpoints import load_checkpoint
from feedbackseg.training.preflight import check_batch_memory
from turbsim import _files
from turbsim.pipeline.generate import generate
from turbsim.pipeline.plan import make_plan
from turbsim.pipeline.recipe import resolve_recipe
from turbsim.sources.synthetic import write_sample_tree
from turbsim_cli.fbseg_cmd import main

REPO = Path(__file__).resolve().parents[1]
FAST = ["--small", "--height", "32", "--batch-size", "2", "--workers", "0", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _make_shards(tmp: Path, splits: dict[str, int]) -> Path:
    src = tmp / "cs"
    write_sample_tree(src, n=max(splits.values()), height=64, width=128, seed=0,
                      per_split=splits, splits=tuple(splits))  # fmt: skip
    recipe = resolve_recipe(
        None, {"compression": "lzf", "shard_size": 2, "cn2": 1e-13, "splits": list(splits)}
    )
    out = tmp / "shards"
    generate(make_plan(src, recipe), out)
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """4 train samples in 2 shards of 2, 2 val samples in one shard; 64 x 128."""
    return _make_shards(tmp_path_factory.mktemp("fault-shards"), {"train": 4, "val": 2})


@pytest.fixture(scope="module")
def trained(shards: Path, tmp_path_factory) -> Path:
    """A run folder of one erfnet step (last.pt, best.pt)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    result = _train(str(shards), "--out", str(run), "--mode", "erfnet", "--max-steps", "1")
    assert result.exit_code == 0, result.output
    return run


def _train(*args: str):
    return CliRunner().invoke(main, ["train", *args, *FAST])


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _one_line_error(result, progress: bool = False) -> str:
    """The error line of a failed command: exit 1 or 2, no traceback, one ``Error:`` line last
    (progress lines before it only if ``progress``)."""
    assert result.exit_code in (1, 2), (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    assert progress or len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return errors[0]


# ------------------------------------------------------------------------ 3: --val-split
def test_unknown_val_split_is_refused_before_training(shards: Path, tmp_path: Path) -> None:
    """The bug: --val-split bogus trained without validation and without best.pt, rc 0."""
    run = tmp_path / "run"
    result = _train(str(shards), "--out", str(run), "--max-steps", "1", "--val-split", "bogus")
    line = _one_line_error(result)
    assert result.exit_code == 2
    assert "'--val-split'" in line and "'bogus'" in line and "train, val" in line
    assert not run.exists()  # refused before anything was written


def test_absent_default_val_split_is_said(tmp_path: Path) -> None:
    only_train = _make_shards(tmp_path, {"train": 2})
    run = tmp_path / "run"
    result = _train(str(only_train), "--out", str(run), "--mode", "erfnet", "--max-steps", "1")
    assert result.exit_code == 0, result.output
    assert "has no split 'val': no validation, no best.pt" in result.output
    assert not (run / "best.pt").exists()


# -------------------------------------------------------------------- 4: learning rates
@pytest.mark.parametrize(
    ("flag", "value"),
    [("--lr-s", "1e30"), ("--lr-r", "1e30"), ("--lr-s", "inf"), ("--lr-r", "nan"),
     ("--lr-s", "1.5")],
)  # fmt: skip
def test_absurd_learning_rates_are_refused_up_front(
    shards: Path, tmp_path: Path, flag: str, value: str
) -> None:
    """The bug: --lr-s 1e30 (or inf) was accepted and the run segfaulted (rc 139)."""
    run = tmp_path / "run"
    result = _train(str(shards), "--out", str(run), "--mode", "feedback", flag, value)
    line = _one_line_error(result)
    assert result.exit_code == 2
    assert f"'{flag}'" in line and "finite number in (0, 1]" in line
    assert not run.exists()


def test_learning_rate_bound_in_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^lr_r: must be a finite number in \(0, 1\]"):
        resolve_config("s", "r", overrides={"lr_r": float("inf")})
    assert resolve_config("s", "r", overrides={"lr_s": 1.0}).lr_s == 1.0  # the bound itself


_SUBPROCESS_TRAIN = """
import sys
import torch
import feedbackseg.config
from click.testing import CliRunner
from turbsim_cli.fbseg_cmd import main
from feedbackseg.models.restorer import Restorer

torch.set_num_threads(1)
mode, poison_after, out, shards = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
args = ["train", shards, "--out", out, "--mode", mode, "--max-steps", "4",
        "--checkpoint-every", "1", "--val-split", "none", *sys.argv[5:]]
if poison_after >= 0:  # a non-finite flow from the restorer's call number poison_after + 1 on
    real, calls = Restorer.predict_flow, []

    def poisoned(self, *a, **k):
        calls.append(1)
        flow = real(self, *a, **k)
        return flow * float("nan") if len(calls) > poison_after else flow

    Restorer.predict_flow = poisoned
else:  # the issue's reproduction: let 1e30 through the validation
    feedbackseg.config.MAX_LEARNING_RATE = float("inf")
result = CliRunner().invoke(main, args)
print(result.output, end="")
sys.exit(result.exit_code)
"""


def _train_in_subprocess(
    tmp_path: Path, shards: Path, mode: str, poison_after: int, *extra: str
) -> subprocess.CompletedProcess:
    """``fbseg train`` in a child process: a crash of the guard would be a segfault there."""
    run = tmp_path / "run"
    return subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_TRAIN, mode, str(poison_after), str(run),
         str(shards), *FAST, *extra],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


@pytest.mark.parametrize(("mode", "calls_per_step"), [("restore-seg", 1), ("feedback", 4)])
def test_non_finite_flow_stops_before_backward(
    shards: Path, tmp_path: Path, mode: str, calls_per_step: int
) -> None:
    """A NaN flow reaches grid_sample's backward no more: the step is named, last.pt kept."""
    done = _train_in_subprocess(tmp_path, shards, mode, 2 * calls_per_step)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("Error: step 3: the restorer's flow")
    assert "is not finite" in last and "keeps step 2" in last
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["step"] == 2
    assert all(
        torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point()
    )


def test_huge_learning_rate_no_longer_segfaults(shards: Path, tmp_path: Path) -> None:
    """The issue's reproduction with the up-front bound lifted: rc 1 and one line, not rc 139."""
    done = _train_in_subprocess(tmp_path, shards, "restore-seg", -1, "--lr-s", "1e30",
                                "--lr-r", "1e30")  # fmt: skip
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("Error: step ") and "not finite" in last and "training stopped" in last


def test_non_finite_segmentation_loss_stops_before_backward(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seg loss is checked before S's backward: S's weights never see the NaN."""
    real = train_module.build_seg_loss

    def nan_at_step_2(config, weights):
        loss, calls = real(config, weights), []

        def seg_loss(logits, label, t):
            calls.append(1)
            value = loss(logits, label, t)
            return value * float("nan") if len(calls) == 2 else value

        return seg_loss

    monkeypatch.setattr(train_module, "build_seg_loss", nan_at_step_2)
    run = tmp_path / "run"
    result = _train(str(shards), "--out", str(run), "--mode", "erfnet", "--max-steps", "3",
                    "--checkpoint-every", "1", "--val-split", "none")  # fmt: skip
    line = _one_line_error(result, progress=True)
    assert "step 2: loss_seg is not finite (the segmenter's step)" in line
    assert "keeps step 1" in line
    assert load_checkpoint(run / "last.pt")["step"] == 1


# ---------------------------------------------------------------------------- 9: OS errors
def test_train_out_under_a_file(shards: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "run"
    line = _one_line_error(_train(str(shards), "--out", str(out), "--max-steps", "1"))
    assert line == f"Error: {out}: cannot be created ({tmp_path / 'file'} is not a folder)"


def test_train_read_only_run_folder(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    real_mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):
        if self == run:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    result = _train(str(shards), "--out", str(run), "--mode", "erfnet", "--max-steps", "1")
    line = _one_line_error(result, progress=True)
    assert line == f"Error: {run}: Permission denied"


class _FullDisk:
    """A binary file object whose writes fail with ENOSPC once ``room`` bytes are written."""

    def __init__(self, stream, room: int) -> None:
        self.stream, self.room = stream, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.stream.write(data)

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stream.close()


def _fill_disk(monkeypatch: pytest.MonkeyPatch, module: object, room: int) -> None:
    """Make ``open`` in ``module`` return files that raise ENOSPC after ``room`` bytes."""
    full = lambda path, mode: _FullDisk(open(path, mode), room)  # noqa: E731
    monkeypatch.setattr(module, "open", full, raising=False)


def test_disk_full_during_checkpoint_save(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.save's "unexpected pos" is reported as the OS error, naming last.pt."""
    _fill_disk(monkeypatch, weights_module, 1000)
    run = tmp_path / "run"
    result = _train(str(shards), "--out", str(run), "--mode", "erfnet", "--max-steps", "2",
                    "--checkpoint-every", "1", "--val-split", "none",
                    "--log-every", "1")  # fmt: skip
    line = _one_line_error(result, progress=True)
    assert line == f"Error: {run / 'last.pt'}: No space left on device (disk full)"
    assert not [p for p in run.iterdir() if _files.is_temporary(p)]  # no temporary left
    assert not (run / "config.json").exists()  # no step kept: a plain rerun is not refused
    assert '"step": 1' in (run / "metrics.jsonl").read_text()  # the log of the step stays
    monkeypatch.undo()
    rerun = _train(str(shards), "--out", str(run), "--mode", "erfnet", "--max-steps", "1")
    assert rerun.exit_code == 0, rerun.output


def test_import_checkpoint_on_a_full_disk_or_read_only_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug: a full disk made import-checkpoint report torch's "unexpected pos"."""
    from feedbackseg.models import ERFNet

    source, dest = tmp_path / "erfnet_pretrained.pth", tmp_path / "out" / "erfnet.pt"
    torch.save({f"module.{k}": v for k, v in ERFNet(num_classes=20).state_dict().items()}, source)
    dest.parent.mkdir()
    _fill_disk(monkeypatch, weights_module, 1000)
    line = _one_line_error(_invoke("import-checkpoint", str(source), str(dest)))
    assert line == f"Error: {dest}: No space left on device (disk full)"
    assert list(dest.parent.iterdir()) == []  # no temporary, no half file
    monkeypatch.undo()
    if os.geteuid() != 0:  # root writes into read-only folders
        dest.parent.chmod(0o555)
        try:
            line = _one_line_error(_invoke("import-checkpoint", str(source), str(dest)))
        finally:
            dest.parent.chmod(0o755)
        assert str(dest) in line and "Permission denied" in line
    done = _invoke("import-checkpoint", str(source), str(dest))
    assert done.exit_code == 0, done.output
    assert torch.load(dest, weights_only=True)["kind"] == "erfnet"


def test_disk_full_during_metrics_append(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill_disk(monkeypatch, rundir_module, 0)
    run = tmp_path / "run"
    result = _train(str(shards), "--out", str(run), "--mode", "erfnet", "--max-steps", "1",
                    "--val-split", "none")  # fmt: skip
    line = _one_line_error(result, progress=True)
    assert line == f"Error: {run / 'metrics.jsonl'}: No space left on device (disk full)"


def test_eval_unwritable_outputs(trained: Path, shards: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    under_file = tmp_path / "file" / "sub"
    ckpt = str(trained / "best.pt")
    cause = f"cannot be created ({tmp_path / 'file'} is not a folder)"
    line = _one_line_error(_invoke("eval", ckpt, str(shards), "--json", str(under_file / "a.json")))
    assert line == f"Error: {under_file / 'a.json'}: {cause}"  # before the evaluation
    line = _one_line_error(
        _invoke("eval", ckpt, str(shards), "--save-predictions", str(under_file))
    )
    assert line == f"Error: {under_file}: {cause}"


def test_eval_json_permission_denied_names_the_target(
    trained: Path, shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(_files, "open", refuse, raising=False)  # the temporary cannot be made
    target = tmp_path / "eval.json"
    result = _invoke("eval", str(trained / "best.pt"), str(shards), "--json", str(target))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == f"Error: {target}: Permission denied"


def test_predict_plot_compare_unwritable_outputs(
    trained: Path, shards: Path, tmp_path: Path
) -> None:
    import cv2
    import numpy as np

    (tmp_path / "file").write_text("x")
    bad = tmp_path / "file" / "sub"
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), np.zeros((32, 64, 3), np.uint8))
    line = _one_line_error(_invoke("predict", str(trained / "best.pt"), str(image),
                                   "--out", str(bad), "--device", "cpu"))  # fmt: skip
    assert str(tmp_path / "file") in line
    line = _one_line_error(_invoke("plot", str(trained), "--out", str(bad / "c.png")))
    assert str(tmp_path / "file") in line
    json_path = tmp_path / "eval.json"
    assert _invoke("eval", str(trained / "best.pt"), str(shards), "--json",
                   str(json_path)).exit_code == 0  # fmt: skip
    for flag in ("--markdown", "--png"):
        line = _one_line_error(_invoke("compare", str(json_path), flag, str(bad / "x")))
        assert line == f"Error: {bad / 'x'}: cannot be created ({bad.parent} is not a folder)"


def test_save_predictions_permission_denied_mid_evaluation(
    trained: Path, shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(_files, "open", refuse, raising=False)
    out = tmp_path / "pred"
    line = _one_line_error(_invoke("eval", str(trained / "best.pt"), str(shards),
                                   "--save-predictions", str(out)), progress=True)  # fmt: skip
    assert line.startswith(f"Error: {out}/") and line.endswith(".png: Permission denied")


def test_plot_and_compare_files_get_the_usual_mode(trained: Path, tmp_path: Path) -> None:
    """Not mkstemp's 0600: what ``open`` would give (0666 & ~umask)."""
    expected = _files.default_mode()
    outputs = {"plot": tmp_path / "curves.png", "md": tmp_path / "t.md", "png": tmp_path / "c.png"}
    assert _invoke("plot", str(trained), "--out", str(outputs["plot"])).exit_code == 0
    result = _invoke("compare", str(trained), "--markdown", str(outputs["md"]),
                     "--png", str(outputs["png"]))  # fmt: skip
    assert result.exit_code == 0, result.output
    for path in outputs.values():
        assert path.stat().st_mode & 0o777 == expected, path


# ------------------------------------------------------------------------- 10: corrupt shards
def _copy(shards: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    return copy


def _flip_label_chunk(shard: Path) -> None:
    """Flip bytes inside the first compressed chunk of the label dataset (lzf then fails)."""
    with h5py.File(shard, "r") as f:
        info = f["label"].id.get_chunk_info(0)
    with open(shard, "r+b") as stream:
        stream.seek(info.byte_offset + info.size // 2)
        data = stream.read(16)
        stream.seek(info.byte_offset + info.size // 2)
        stream.write(bytes(b ^ 0xFF for b in data))


def test_flipped_shard_in_train_and_eval(trained: Path, shards: Path, tmp_path: Path) -> None:
    """The bug: ``OSError: filter returned failure`` tracebacks from pixel_counts and the loader."""
    copy = _copy(shards, tmp_path)
    _flip_label_chunk(copy / "train" / "shard-00000.h5")
    _flip_label_chunk(copy / "val" / "shard-00000.h5")
    run = tmp_path / "run"
    line = _one_line_error(_train(str(copy), "--out", str(run), "--max-steps", "1"), progress=True)
    assert str(copy / "train" / "shard-00000.h5") in line
    assert "cannot read the shard" in line and f"run `turbsim verify {copy}`" in line
    assert not run.exists()  # refused before anything was written
    line = _one_line_error(_invoke("eval", str(trained / "best.pt"), str(copy)), progress=True)
    assert str(copy / "val" / "shard-00000.h5") in line and "turbsim verify" in line


def test_flipped_shard_through_a_loader_worker(trained: Path, shards: Path, tmp_path: Path) -> None:
    copy = _copy(shards, tmp_path)
    _flip_label_chunk(copy / "val" / "shard-00000.h5")
    result = _invoke("eval", str(trained / "best.pt"), str(copy), "--workers", "1")
    line = _one_line_error(result, progress=True)
    assert line.startswith(f"Error: {copy / 'val' / 'shard-00000.h5'}: cannot read the shard")


def test_truncated_deleted_and_miscounted_shards(shards: Path, tmp_path: Path) -> None:
    copy = _copy(shards, tmp_path)
    shard = copy / "train" / "shard-00001.h5"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"shard-00001\.h5: cannot read the shard .*turbsim verify"):
        ShardDataset(copy, "train")
    shard.unlink()
    with pytest.raises(DataError, match=r"shard-00001\.h5: shard listed in the manifest is miss"):
        ShardDataset(copy, "train")
    with pytest.raises(DataError, match=r"shard-00001\.h5: shard listed in the manifest is miss"):
        pixel_counts(copy, "train")
    # a manifest claiming 5 samples where the file holds 2: refused when the dataset opens
    shutil.copy(shards / "train" / "shard-00001.h5", shard)
    manifest = json.loads((copy / "manifest.json").read_text())
    entry = next(e for e in manifest["shards"] if e["file"].endswith("train/shard-00001.h5"))
    entry["samples"] = 5
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"holds 2 samples, the manifest lists 5; run `turbsim"):
        ShardDataset(copy, "train")


def test_data_error_pickles_and_keeps_one_line() -> None:
    error = DataError("/s/train/shard-00000.h5: cannot read the shard (x); run `turbsim verify /s`")
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
    worker = DataError(
        "Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
        'last):\n  File "x.py", line 1, in f\nfeedbackseg.data.DataError: /s/a.h5: cannot read'
    )
    assert str(worker) == "/s/a.h5: cannot read"


# ------------------------------------------------------------------------------ 11: sizes
def test_huge_height_is_refused_before_anything_is_written(shards: Path, tmp_path: Path) -> None:
    """The bug: --height 100000 died in cv2 ("Insufficient memory") after writing config.json."""
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(shards), "--out", str(run), "--small",
                                       "--height", "100000", "--device", "cpu"])  # fmt: skip
    line = _one_line_error(result)
    assert result.exit_code == 2 and "'--height'" in line
    assert "100000x200000 px" in line and "GB of memory" in line and "machine's" in line
    assert not run.exists()


def test_crop_larger_than_the_images_is_one_line(shards: Path, tmp_path: Path) -> None:
    """The bug: a config file's crop larger than the resized images died in a ValueError
    traceback."""
    config = tmp_path / "crop.toml"
    config.write_text("augment = true\ncrop = [48, 48]\n")
    run = tmp_path / "run"
    result = _train(str(shards), "--out", str(run), "--max-steps", "1", "--config", str(config))
    line = _one_line_error(result, progress=True)
    assert result.exit_code == 1
    assert "crop 48x48 is larger than the images" in line and "(32x64 px)" in line
    assert str(shards) in line and "'train'" in line
    assert not (run / "config.json").exists()


def test_batch_memory_limit_is_explicit() -> None:
    config = resolve_config("s", "r", overrides={"height": 224, "batch_size": 8})
    check_batch_memory(config, (224, 448), limit=224 * 448 * 8 * 71)  # exactly fits
    with pytest.raises(ConfigError, match=r"^height: 224 gives 224x448 px samples"):
        check_batch_memory(config, (224, 448), limit=224 * 448 * 8 * 71 - 1)


# ------------------------------------------------------------------------------------ minor
def test_moved_run_resumes(shards: Path, tmp_path: Path) -> None:
    """The bug: ``out`` counted as a changed key, so a copied or moved run could not resume."""
    first = tmp_path / "first"
    args = ["--mode", "erfnet", "--val-split", "none"]
    assert _train(str(shards), "--out", str(first), "--max-steps", "1", *args).exit_code == 0
    moved = tmp_path / "moved"
    first.rename(moved)
    result = _train(str(shards), "--out", str(moved), "--max-steps", "2", "--resume", *args)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(moved / "last.pt")["step"] == 2
    assert json.loads((moved / "config.json").read_text())["out"] == str(moved)


def test_resume_without_last_pt(shards: Path, tmp_path: Path) -> None:
    """No checkpoint at all: --resume starts the run afresh (round 2, defect 13: it was refused
    with "start it again with --overwrite"). A best.pt without last.pt is refused."""
    run = tmp_path / "run"
    args = ["--mode", "erfnet", "--val-split", "none"]
    assert _train(str(shards), "--out", str(run), "--max-steps", "1", *args).exit_code == 0
    (run / "last.pt").unlink()
    result = _train(str(shards), "--out", str(run), "--max-steps", "1", "--resume", *args)
    assert result.exit_code == 0, result.output
    assert "stopped before its first checkpoint: starting it afresh" in result.output
    assert load_checkpoint(run / "last.pt")["step"] == 1
    shutil.copy(run / "last.pt", run / "best.pt")
    (run / "last.pt").unlink()
    line = _one_line_error(_train(str(shards), "--out", str(run), "--resume", *args))
    assert f"{run}: no last.pt to resume from, but a best.pt" in line and "--overwrite" in line


def test_failed_start_leaves_no_config(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug: a start that failed left config.json, and a plain rerun was refused."""
    run = tmp_path / "run"
    run.mkdir()

    def no_weights(config, log):
        raise DataError("counting failed")

    monkeypatch.setattr("feedbackseg.training.train_state.initial_class_weights", no_weights)
    line = _one_line_error(_train(str(shards), "--out", str(run), "--max-steps", "1"), True)
    assert line == "Error: counting failed"
    assert list(run.iterdir()) == []  # nothing written
    monkeypatch.undo()
    result = _train(str(shards), "--out", str(run), "--mode", "erfnet", "--max-steps", "1")
    assert result.exit_code == 0, result.output
