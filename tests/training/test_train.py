"""feedbackseg.training.train / config / distributed and ``fbseg train``: tiny shards, --small,
CPU."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from reference import cb_ifl_naive
from train_helpers import FAST, _cli, _config, _make_shards, _quiet, _records

import feedbackseg.training.train as train_module
from feedbackseg.config import resolve_config
from feedbackseg.data.dataset import ShardDataset
from feedbackseg.models import ERFNet
from feedbackseg.runs.checkpoints import load_checkpoint, model_from_checkpoint
from feedbackseg.training.train import TrainError, build_seg_loss, train

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _one_line_error(result, progress: bool = False) -> str:
    """The error line of a failed command; nothing else printed unless ``progress``."""
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    assert progress or len(lines) == 1, result.output
    return errors[0]


# ------------------------------------------------------------------------- loss, samplers
def test_seg_loss_schedule_and_reductions() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 19, 8, 8)
    label = torch.randint(0, 19, (2, 8, 8))
    weights = torch.rand(19) + 0.1
    cb = build_seg_loss(resolve_config("s", "r", overrides={"alpha": 2.0}), weights)
    for t, gamma in ((1, 0.0), (2, 0.1), (3, 0.2)):  # against the per-pixel loop
        expected = cb_ifl_naive(logits, label, weights.double().numpy(), gamma, alpha=2.0)
        assert float(cb(logits, label, t)) == pytest.approx(expected, rel=1e-5)
    ce = build_seg_loss(resolve_config("s", "r", overrides={"loss": "ce"}), weights)
    for t in (1, 3):  # gamma 0 and unit weights at every iteration: exactly cross-entropy
        torch.testing.assert_close(ce(logits, label, t), F.cross_entropy(logits, label))
    bad = label.clone()
    bad[0, 0, 0] = 25
    with pytest.raises(TrainError, match=r"split 'train'.*\[25\]"):
        cb(logits, bad, 1)


# ---------------------------------------------------------------------------- train runs
@pytest.mark.parametrize("mode", ["erfnet", "restore-seg", "feedback"])
def test_cli_trains_each_mode(shards: Path, tmp_path: Path, mode: str) -> None:
    run = tmp_path / "run"
    extra = ["--iterations", "2"] if mode == "feedback" else []
    result = _cli(str(shards), "--out", str(run), "--mode", mode, "--max-steps", "2",
                  "--log-every", "1", *FAST, *extra)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert {"config.json", "metrics.jsonl", "last.pt", "best.pt"} <= {p.name for p in run.iterdir()}
    config = json.loads((run / "config.json").read_text())
    assert config["mode"] == mode and config["max_steps"] == 2 and config["small"] is True
    records = _records(run)
    assert all(isinstance(r["step"], int) for r in records)
    train_records = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train_records] == [1, 2]
    assert all(math.isfinite(r["loss_seg"]) and r["samples_per_s"] > 0 for r in train_records)
    assert (train_records[0]["lr_r"] is None) == (mode == "erfnet")
    val = [r for r in records if r["kind"] == "val"]
    assert val and val[-1]["step"] == 2 and val[-1]["val_resolution"] == [32, 64]
    assert 0 <= val[-1]["val_miou"] <= 1 and len(val[-1]["per_class"]) == 19
    if mode == "feedback":
        assert len(val[-1]["val_miou_per_iteration"]) == 2
        assert val[-1]["val_miou_per_iteration"][-1] == val[-1]["val_miou"]
    for name in ("last.pt", "best.pt"):
        checkpoint = load_checkpoint(run / name)  # weights_only=True inside
        assert checkpoint["mode"] == mode and checkpoint["step"] == 2
        model = model_from_checkpoint(checkpoint, run / name)
        for key, value in model.state_dict().items():
            assert torch.equal(value, checkpoint["model"][key]), key
    last = load_checkpoint(run / "last.pt")
    assert set(last["optimizers"]) == ({"s"} if mode == "erfnet" else {"s", "r"})
    assert last["epoch"] == 1 and last["batch_in_epoch"] == 0  # 4 samples, batch 2
    assert "2 steps" in result.output.strip().splitlines()[-1]


def test_resume_gives_the_same_weights_as_one_run(shards: Path, tmp_path: Path) -> None:
    """5 steps in one go == 3 steps (mid-epoch) + --resume to 5; feedback T = 2, dropout on."""
    common = {"mode": "feedback", "iterations": 2, "seed": 11, "log_every": 1, "val_every": 2}
    whole = train(_config(shards, tmp_path / "whole", max_steps=5, **common), _quiet)
    train(_config(shards, tmp_path / "split", max_steps=3, **common), _quiet)
    resumed = train(_config(shards, tmp_path / "split", max_steps=5, resume=True, **common), _quiet)
    assert whole.step == resumed.step == 5 and whole.epoch == resumed.epoch == 2
    a = load_checkpoint(tmp_path / "whole" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["schedulers"] == b["schedulers"]
    losses = [[r["loss_seg"] for r in _records(tmp_path / run) if r["kind"] == "train"]
              for run in ("whole", "split")]  # fmt: skip
    assert losses[0] == losses[1] and len(losses[0]) == 5
    assert json.loads((tmp_path / "split" / "config.json").read_text())["max_steps"] == 5


def test_existing_run_is_refused_without_resume_or_overwrite(shards: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [str(shards), "--out", str(run), "--mode", "erfnet", "--max-steps", "1", *FAST]
    assert _cli(*args).exit_code == 0
    line = _one_line_error(_cli(*args))
    assert str(run) in line and "--resume" in line and "--overwrite" in line
    changed = _one_line_error(_cli(*args, "--resume", "--lr-s", "0.001"))
    assert "config.json" in changed and "lr_s: 0.0005 -> 0.001" in changed
    result = _cli(*args, "--overwrite", "--max-steps", "2")
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in _records(run) if r["kind"] == "train"] == [2]  # old lines gone


def test_missing_or_foreign_shards_give_one_line(tmp_path: Path) -> None:
    missing = _one_line_error(_cli(str(tmp_path / "nope"), "--out", str(tmp_path / "r"), *FAST))
    assert "nope: no such shard folder" in missing
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "a.png").write_bytes(b"x")
    line = _one_line_error(_cli(str(foreign), "--out", str(tmp_path / "r"), *FAST))
    assert "photos: no manifest.json" in line
    assert not (tmp_path / "r").exists()  # nothing written for bad input


def test_missing_split_and_bad_flags(shards: Path, tmp_path: Path) -> None:
    line = _one_line_error(
        _cli(str(shards), "--out", str(tmp_path / "r"), *FAST, "--config", str(tmp_path / "x"))
    )
    assert "x: no such config file" in line
    line = _one_line_error(_cli(str(shards), "--out", str(tmp_path / "r"), *FAST, "--height", "40"))
    assert "--height" in line


def test_checkpoint_of_the_wrong_kind_is_refused(shards: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [str(shards), "--out", str(run), "--mode", "erfnet", "--max-steps", "1", *FAST]
    assert _cli(*args).exit_code == 0
    torch.save({"state_dict": {"w": torch.zeros(1)}}, run / "last.pt")
    line = _one_line_error(_cli(*args, "--resume", "--max-steps", "2"))
    assert "last.pt: not an fbseg training checkpoint" in line


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = train_module.TRAIN_STEPS["erfnet"]
    calls = []

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        return {**out, "loss_seg": math.nan} if len(calls) == 3 else out

    monkeypatch.setitem(train_module.TRAIN_STEPS, "erfnet", poisoned)
    run = tmp_path / "run"
    result = _cli(str(shards), "--out", str(run), "--mode", "erfnet", "--max-steps", "6",
                  "--checkpoint-every", "1", "--val-split", "none", *FAST)  # fmt: skip
    line = _one_line_error(result, progress=True)
    assert "step 3: the loss is not finite" in line and "keeps step 2" in line
    checkpoint = load_checkpoint(run / "last.pt")
    assert checkpoint["step"] == 2
    assert all(
        torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point()
    )


def test_pretrained_encoder_initialises_the_segmenter(tmp_path: Path, shards: Path) -> None:
    torch.manual_seed(123)
    source = ERFNet(19)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "erfnet.pth")
    config = _config(shards, tmp_path / "run", mode="erfnet", max_steps=1, lr_s=1e-12,
                     pretrained_encoder=str(tmp_path / "erfnet.pth"), val_split="none")  # fmt: skip
    train(config, _quiet)
    trained = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    for key, value in source.encoder.named_parameters():
        torch.testing.assert_close(trained[f"encoder.{key}"], value.detach(), atol=1e-6, rtol=0)
    decoder = source.decoder.output_conv.weight
    assert not torch.allclose(trained["decoder.output_conv.weight"], decoder)  # not copied
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    line = _one_line_error(
        _cli(
            str(shards),
            "--out",
            str(tmp_path / "r2"),
            *FAST,
            "--mode",
            "erfnet",
            "--pretrained-encoder",
            str(bad),
        )  # fmt: skip
    )
    assert "bad.pth" in line


# -------------------------------------------------------------------------------- slow
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    return env


@pytest.mark.slow
def test_kill_9_then_resume_finishes_at_the_right_step(shards: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [sys.executable, "-m", "turbsim_cli.fbseg_cmd", "train", str(shards), "--out", str(run),
            "--mode", "erfnet", "--max-steps", "60", "--checkpoint-every", "1", "--log-every",
            "1", "--val-every", "1000", *FAST]  # fmt: skip
    proc = subprocess.Popen(args, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while not (run / "last.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL  # killed mid-run, not finished
    killed_at = load_checkpoint(run / "last.pt")["step"]
    assert 1 <= killed_at < 60
    done = subprocess.run([*args, "--resume"], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"resuming {run / 'last.pt'} at step {killed_at}" in done.stderr
    assert load_checkpoint(run / "last.pt")["step"] == 60
    steps = [r["step"] for r in _records(run) if r["kind"] == "train"]
    assert steps == list(range(1, 61))  # lines after the checkpoint were dropped, none repeated
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))


@pytest.mark.slow
def test_ddp_two_cpu_processes(shards: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", str(_free_port()), "-m", "turbsim_cli.fbseg_cmd", "train", str(shards),
           "--out", str(run), "--mode", "feedback", "--iterations", "2", "--max-steps", "2",
           "--log-every", "1", *FAST]  # fmt: skip
    cmd[cmd.index("--batch-size") + 1] = "1"
    done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("2 steps, best val mIoU") == 1  # rank 0 alone reports
    records = _records(run)
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2]  # rank 0 alone logs
    assert sorted(p.name for p in run.iterdir()) == [
        "best.pt", "config.json", "last.pt", "metrics.jsonl"
    ]  # fmt: skip
    val = [r for r in records if r["kind"] == "val"]
    assert len(val) == 1
    # 3 val samples on 2 ranks: a padding sampler would count 4; every pixel exactly once.
    labels = ShardDataset(shards, "val", height=32)
    valid = sum(int((labels[i]["label"] != 255).sum()) for i in range(len(labels)))
    assert len(labels) == 3 and val[0]["val_pixels"] == valid
    checkpoint = load_checkpoint(run / "last.pt")
    assert checkpoint["step"] == 2 and len(checkpoint["rng"]) == 2  # both ranks' RNG states
    model_from_checkpoint(checkpoint)


@pytest.mark.slow
def test_training_loss_falls_on_two_samples(tmp_path: Path) -> None:
    root = _make_shards(tmp_path, train=2, val=None)
    config = _config(root, tmp_path / "run", mode="erfnet", loss="ce", lr_s=5e-3, max_steps=40,
                     log_every=1, checkpoint_every=1000)  # fmt: skip
    result = train(config, _quiet)
    assert result.best_miou is None and result.last_val is None  # no val split: no validation
    losses = [r["loss_seg"] for r in _records(tmp_path / "run")]
    assert len(losses) == 40
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.7 * first, (first, last)
