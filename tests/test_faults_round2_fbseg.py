"""``fbseg`` under faults, second round (defects 9-16 of the hostile probe): symlink loops, a
full disk, inputs too large for memory, out of memory while training, Ctrl-C before the first
checkpoint, killed trainers and their loader workers, Ctrl-C while the workers start, and two
trainings on one run folder. Tiny shards, --small, CPU; faults that root cannot produce are
injected (a writer raising ENOSPC, an allocator raising out of memory)."""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_fbseg_faults import FAST, _fill_disk, _make_shards, _one_line_error

import feedbackseg.evaluation.evaluate as evaluate_module
import feedbackseg.evaluation.predict as predict_module
from feedbackseg.config import TrainConfig, resolve_config
from feedbackseg.models import TRAIN_STEPS
from feedbackseg.runs.checkpoints import load_checkpoint
from turbsim import _files
from turbsim_cli.fbseg_cmd import main

REPO = Path(__file__).resolve().parents[1]
LOCK = ".fbseg.lock"
DISK_FULL = "No space left on device (disk full)"
#: What PyTorch's CPU allocator raises when malloc fails (a RuntimeError, not a MemoryError).
CPU_ALLOCATOR = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 536870912 bytes. Error code 12 (Cannot allocate memory)"
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """4 train samples in 2 shards of 2, 2 val samples in one shard; 64 x 128."""
    return _make_shards(tmp_path_factory.mktemp("round2-shards"), {"train": 4, "val": 2})


@pytest.fixture(scope="module")
def trained(shards: Path, tmp_path_factory) -> Path:
    """A run folder of one erfnet step (last.pt, best.pt)."""
    run = tmp_path_factory.mktemp("round2-trained") / "run"
    result = _train(str(shards), "--out", str(run), "--mode", "erfnet", "--max-steps", "1")
    assert result.exit_code == 0, result.output
    return run


def _train(*args: str):
    return CliRunner().invoke(main, ["train", *args, *FAST])


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _loop(tmp_path: Path, name: str = "loop") -> Path:
    """A symlink that points at itself."""
    link = tmp_path / name
    link.symlink_to(name)
    return link


def _image(path: Path, height: int, width: int) -> Path:
    cv2.imwrite(str(path), np.full((height, width, 3), 128, np.uint8))
    return path


# ---------------------------------------------------------------------- 9: symlink loops
@pytest.mark.parametrize(
    ("where", "flag"),
    [("shards", "'SHARDS'"), ("out", "'--out'"), ("encoder", "'--pretrained-encoder'"),
     ("restorer", "'--pretrained-restorer'")],
)  # fmt: skip
def test_train_symlink_loop_is_one_line_naming_the_flag(
    shards: Path, tmp_path: Path, where: str, flag: str
) -> None:
    """The bug: RuntimeError "Symlink loop from ..." tracebacks from the config's resolve()."""
    loop = _loop(tmp_path)
    args = {"shards": [str(loop), "--out", str(tmp_path / "run")],
            "out": [str(shards), "--out", str(loop)],
            "encoder": [str(shards), "--out", str(tmp_path / "run"),
                        "--pretrained-encoder", str(loop)],
            "restorer": [str(shards), "--out", str(tmp_path / "run"), "--mode", "restore-seg",
                         "--pretrained-restorer", str(loop)]}[where]  # fmt: skip
    line = _one_line_error(_train(*args, "--max-steps", "1"))
    assert flag in line and str(loop) in line and "symlink loop" in line, line
    assert not (tmp_path / "run").exists()


def test_eval_predict_symlink_loops_are_named(trained: Path, shards: Path, tmp_path: Path) -> None:
    """Inputs that are symlink loops are called so (not "no such file"); outputs are refused
    before any work and the link is left as it was."""
    loop = _loop(tmp_path)
    best = str(trained / "best.pt")
    image = str(_image(tmp_path / "in.png", 32, 64))
    cases = [
        ("eval", str(loop), str(shards)),
        ("eval", best, str(loop)),
        ("eval", best, str(shards), "--json", str(loop)),
        ("eval", best, str(shards), "--save-predictions", str(loop)),
        ("predict", str(loop), image, "--out", str(tmp_path / "p"), "--device", "cpu"),
        ("predict", best, str(loop), "--out", str(tmp_path / "p"), "--device", "cpu"),
        ("predict", best, image, "--out", str(loop), "--device", "cpu"),
        ("compare", str(trained), "--markdown", str(loop)),
    ]
    for case in cases:
        line = _one_line_error(_invoke(*case))
        assert line.startswith(f"Error: {loop}: symlink loop"), (case, line)
        assert loop.is_symlink() and os.readlink(loop) == "loop"  # not replaced by a file
    assert not (tmp_path / "p").exists()


# ------------------------------------------------------------------------- 10: a full disk
def test_disk_full_names_the_path_in_eval_predict_compare(
    trained: Path, shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug: ``Error: [Errno 28] No space left on device`` without the path."""
    best = str(trained / "best.pt")
    json_path, preds, md = tmp_path / "e.json", tmp_path / "preds", tmp_path / "t.md"
    image = _image(tmp_path / "street.png", 32, 64)
    _fill_disk(monkeypatch, _files, 0)  # every published file: ENOSPC on the first write
    line = _one_line_error(_invoke("eval", best, str(shards), "--json", str(json_path)), True)
    assert line == f"Error: {json_path}: {DISK_FULL}"
    line = _one_line_error(
        _invoke("eval", best, str(shards), "--save-predictions", str(preds)), True
    )
    assert line.startswith(f"Error: {preds}/") and line.endswith(f".png: {DISK_FULL}"), line
    line = _one_line_error(_invoke("predict", best, str(image), "--out", str(tmp_path / "p"),
                                   "--device", "cpu"))  # fmt: skip
    assert line == f"Error: {tmp_path / 'p' / 'street_seg.png'}: {DISK_FULL}"
    line = _one_line_error(_invoke("compare", str(trained), "--markdown", str(md)), True)
    assert line == f"Error: {md}: {DISK_FULL}"
    published = [json_path, md, *preds.glob("*"), *(tmp_path / "p").glob("*")]
    assert not [p for p in published if p.exists()]  # nothing half-written, no temporaries


def test_disk_full_in_plot(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", full)
    out = tmp_path / "curves.png"
    line = _one_line_error(_invoke("plot", str(trained), "--out", str(out)))
    assert line == f"Error: {out}: {DISK_FULL}"
    assert list(tmp_path.iterdir()) == []


def test_disk_full_in_study_names_the_study_folder(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OS error that names no file (the study's own writers) names the study folder."""

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("feedbackseg.study.runner.run_study", full)
    out = tmp_path / "study"
    line = _one_line_error(_invoke("study", str(shards), "--out", str(out)))
    assert line == f"Error: {out}: {DISK_FULL}"


# ------------------------------------------------------------ 11: inputs too large for memory
def test_eval_huge_height_is_refused_up_front(trained: Path, shards: Path) -> None:
    """The bug: ``fbseg eval --height 65536`` died in an out-of-memory traceback."""
    result = _invoke("eval", str(trained / "best.pt"), str(shards), "--height", "65536")
    line = _one_line_error(result)
    assert result.exit_code == 2 and "'--height'" in line
    assert "65536x131072 px" in line and "GB" in line and "memory" in line, line


def test_predict_long_thin_image_is_refused_up_front(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug: ``fbseg predict`` on a 2x100000 image died in an out-of-memory traceback (at
    the checkpoint's height 32: 32x1600000 px). The machine's memory is set to 4 GB here (the
    image needs ~39 GB), so the test is the same on every machine; nothing is written, not even
    for the small image given first."""
    monkeypatch.setattr("feedbackseg.devices.memory.physical_memory_bytes", lambda: 4 * 10**9)
    small = _image(tmp_path / "a_small.png", 32, 64)
    thin = _image(tmp_path / "thin.png", 2, 100000)
    out = tmp_path / "p"
    line = _one_line_error(_invoke("predict", str(trained / "best.pt"), str(small), str(thin),
                                   "--out", str(out), "--device", "cpu"))  # fmt: skip
    assert line.startswith(f"Error: {thin}: ") and "32x1600000 px" in line, line
    assert "GB" in line and "4.0 GB" in line and "--height" in line, line
    assert not out.exists()


@pytest.mark.parametrize(
    "error",
    [RuntimeError(CPU_ALLOCATOR), MemoryError(), torch.OutOfMemoryError("CUDA out of memory.")],
    ids=["cpu-allocator", "MemoryError", "OutOfMemoryError"],
)
def test_out_of_memory_in_eval_and_predict_is_one_line(
    trained: Path, shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error
) -> None:
    def exhausted(*args, **kwargs):
        raise error

    monkeypatch.setattr(evaluate_module, "infer", exhausted)
    monkeypatch.setattr(predict_module, "infer", exhausted)
    result = _invoke("eval", str(trained / "best.pt"), str(shards), "--json",
                     str(tmp_path / "e.json"))  # fmt: skip
    line = _one_line_error(result, True)
    assert result.exit_code == 1 and line.startswith("Error: out of memory"), line
    assert "32x64 px" in line and "--height" in line and "--batch-size" in line, line
    assert not (tmp_path / "e.json").exists()
    image = _image(tmp_path / "in.png", 32, 64)
    line = _one_line_error(_invoke("predict", str(trained / "best.pt"), str(image), "--out",
                                   str(tmp_path / "p"), "--device", "cpu"))  # fmt: skip
    assert line.startswith("Error: out of memory") and "--height" in line, line


# ----------------------------------------------------------- 12: out of memory while training
@pytest.mark.parametrize(
    "error", [RuntimeError(CPU_ALLOCATOR), MemoryError()], ids=["cpu-allocator", "MemoryError"]
)
def test_out_of_memory_while_training_keeps_last_pt_and_resumes(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error
) -> None:
    """The bug: the allocator's traceback. Now one line naming the step and what to try;
    last.pt keeps the last good step and the run resumes."""
    real, calls = TRAIN_STEPS["erfnet"], []

    def exhausted_at_step_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setitem(TRAIN_STEPS, "erfnet", exhausted_at_step_3)
    run = tmp_path / "run"
    args = ["--mode", "erfnet", "--max-steps", "4", "--checkpoint-every", "1", "--val-split",
            "none"]  # fmt: skip
    result = _train(str(shards), "--out", str(run), *args)
    line = _one_line_error(result, progress=True)
    assert result.exit_code == 1
    assert line.startswith("Error: out of memory at step 3"), line
    assert "--batch-size" in line and "--height" in line and "keeps step 2" in line, line
    assert load_checkpoint(run / "last.pt")["step"] == 2
    monkeypatch.undo()
    resumed = _train(str(shards), "--out", str(run), *args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(run / "last.pt")["step"] == 4


# ------------------------------------------------- 13: stopped before the first checkpoint
def test_ctrl_c_before_the_first_checkpoint_reruns_plainly(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug: Ctrl-C left config.json; the rerun said "pass --resume" and --resume said
    "start again with --overwrite"."""
    real, calls = TRAIN_STEPS["erfnet"], []

    def ctrl_c_at_step_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setitem(TRAIN_STEPS, "erfnet", ctrl_c_at_step_2)
    run = tmp_path / "run"
    args = ["--mode", "erfnet", "--max-steps", "2", "--val-split", "none"]
    result = _train(str(shards), "--out", str(run), *args)
    assert result.exit_code == 130, (result.exit_code, result.output)
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"interrupted after 1 step(s) of {run}, before the first checkpoint")
    assert "Traceback" not in result.output and "Aborted" not in result.output
    assert not (run / "config.json").exists()
    monkeypatch.undo()
    rerun = _train(str(shards), "--out", str(run), *args)
    assert rerun.exit_code == 0, rerun.output


def _config(shards: Path, run: Path) -> TrainConfig:
    """The config of ``_train(shards, "--out", run, "--mode", "erfnet", "--max-steps", "2",
    "--val-split", "none")``."""
    flags = {"mode": "erfnet", "small": True, "height": 32, "batch_size": 2, "workers": 0,
             "device": "cpu", "max_steps": 2, "val_split": "none"}  # fmt: skip
    return resolve_config(str(shards), str(run), overrides=flags)


def _killed_before_first_checkpoint(shards: Path, run: Path) -> None:
    """What kill -9 before the first checkpoint leaves: config.json and a metrics line."""
    run.mkdir()
    (run / "config.json").write_text(_config(shards, run).to_json() + "\n")
    (run / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "loss_seg": 3.0}\n')


@pytest.mark.parametrize("resume", [False, True], ids=["plain-rerun", "resume"])
def test_killed_before_the_first_checkpoint_is_no_dead_end(
    shards: Path, tmp_path: Path, resume: bool
) -> None:
    run = tmp_path / "run"
    args = ["--mode", "erfnet", "--max-steps", "2", "--val-split", "none"]
    _killed_before_first_checkpoint(shards, run)
    result = _train(str(shards), "--out", str(run), *args, *(["--resume"] if resume else []))
    assert result.exit_code == 0, result.output
    assert "stopped before its first checkpoint" in result.output and "afresh" in result.output
    assert load_checkpoint(run / "last.pt")["step"] == 2
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 2  # the killed run's line is gone


# ------------------------------------------- 14, 15: loader workers, SIGKILL, SIGTERM, SIGINT
def _session(sid: int) -> list[int]:
    """Live (not zombie) processes of the session ``sid`` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry))
    return found


def _holds_shards(pid: int) -> bool:
    try:
        return any("shard-" in os.readlink(f"/proc/{pid}/fd/{fd}")
                   for fd in os.listdir(f"/proc/{pid}/fd"))  # fmt: skip
    except OSError:
        return False


def _start_trainer(shards: Path, run: Path, stderr: Path) -> subprocess.Popen:
    """``fbseg train --workers 2`` for a long time, in its own session (a terminal's group);
    its stderr goes to a file (orphaned workers would hold a pipe open)."""
    command = [sys.executable, "-m", "turbsim_cli.fbseg_cmd", "train", str(shards),
               "--out", str(run),
               "--small", "--height", "32", "--batch-size", "2", "--workers", "2", "--device",
               "cpu", "--max-steps", "100000", "--val-split", "none", "--checkpoint-every",
               "100000", "--log-every", "100000"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(stderr, "w") as sink:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=sink, start_new_session=True)  # fmt: skip


def _wait_for(condition, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _workers(trainer: subprocess.Popen) -> list[int]:
    return [p for p in _session(trainer.pid) if p != trainer.pid and _holds_shards(p)]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "SIGTERM"])
def test_killed_trainer_takes_its_loader_workers_along(
    shards: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    """The bug: after kill -9 (or SIGTERM) of ``fbseg train --workers 2`` the two workers,
    their launcher and the resource tracker ran on for minutes, holding the shards open. And
    while the trainer ran, a second train or a --resume on its RUN was not refused."""
    run = tmp_path / "run"
    log = tmp_path / "stderr.txt"
    trainer = _start_trainer(shards, run, log)
    try:
        _wait_for(lambda: len(_workers(trainer)) >= 2 or trainer.poll() is not None, 120,
                  "two loader workers")  # fmt: skip
        assert trainer.poll() is None, log.read_text()
        for extra in (["--resume"], [], ["--overwrite"]):  # 16: the live run is refused
            again = _train(str(shards), "--out", str(run), "--max-steps", "1", *extra)
            line = _one_line_error(again, progress=True)
            assert f"pid {trainer.pid}" in line and "in use" in line, (extra, line)
        assert (run / "config.json").is_file()  # --overwrite deleted nothing
        os.kill(trainer.pid, sig)
        trainer.wait(timeout=60)
        _wait_for(lambda: not _session(trainer.pid), 10, "the workers to end")
    finally:
        for pid in _session(trainer.pid):
            os.kill(pid, signal.SIGKILL)
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()
    stderr = log.read_text()
    if sig == signal.SIGTERM:  # handled like Ctrl-C
        assert trainer.returncode == 128 + signal.SIGTERM, (trainer.returncode, stderr)
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("interrupted after ") and "(SIGTERM)" in last, stderr
        assert "Traceback" not in stderr
        assert not (run / "config.json").exists()  # nothing to resume: a plain rerun works


_INTERRUPT_MOMENTS = [0.0, 0.05, 0.15, 0.4]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_while_the_workers_start_is_one_line(shards: Path, tmp_path: Path) -> None:
    """The bug: Ctrl-C as the loader's worker launcher started printed "Fatal Python error:
    init_import_site" and KeyboardInterrupt tracebacks. Ctrl-C goes to the whole terminal
    group (killpg), at several moments after the trainer's first child process appears."""
    for number, delay in enumerate(_INTERRUPT_MOMENTS):
        run, log = tmp_path / f"run{number}", tmp_path / f"stderr{number}.txt"
        trainer = _start_trainer(shards, run, log)
        try:
            _wait_for(lambda t=trainer: len(_session(t.pid)) > 1 or t.poll() is not None, 120,
                      "the first child")  # fmt: skip
            time.sleep(delay)
            os.killpg(trainer.pid, signal.SIGINT)
            trainer.wait(timeout=60)
            _wait_for(lambda t=trainer: not _session(t.pid), 10, "the children to end")
        finally:
            for pid in _session(trainer.pid):
                os.kill(pid, signal.SIGKILL)
            if trainer.poll() is None:
                trainer.kill()
                trainer.wait()
        stderr = log.read_text()
        assert "Traceback" not in stderr and "Fatal Python error" not in stderr, (delay, stderr)
        assert trainer.returncode == 130, (delay, trainer.returncode, stderr)
        assert stderr.strip().splitlines()[-1].startswith("interrupted"), (delay, stderr)
        assert sum(line.startswith("interrupted") for line in stderr.splitlines()) == 1, stderr
        rerun_ok = not (run / "config.json").exists() or (run / "last.pt").exists()
        assert rerun_ok, (delay, sorted(p.name for p in run.iterdir()))


# ----------------------------------------------------------------- 16: one lock per run folder
_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{os.getpid()}\\n".encode())
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_locked_run_is_refused_and_left_alone(shards: Path, tmp_path: Path) -> None:
    """The bug: two trainings on one RUN (or --resume of a live one) both ran and wrote two
    metrics records per step. A run folder locked by a live process (its pid in RUN/.fbseg.lock)
    is refused, with --overwrite too, and nothing in it changes."""
    run = tmp_path / "run"
    args = ["--mode", "erfnet", "--max-steps", "2", "--val-split", "none"]
    assert _train(str(shards), "--out", str(run), *args).exit_code == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run / LOCK)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in (["--resume", "--max-steps", "3"], [], ["--overwrite"]):
            line = _one_line_error(_train(str(shards), "--out", str(run), *args, *extra), True)
            assert f"{run}: in use by another fbseg train (pid {holder.pid}" in line, line
    finally:
        holder.communicate("")
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != LOCK}
    assert after == before
    # the holder is gone: its lock file is stale and is taken over
    assert (run / LOCK).read_text().strip() == str(holder.pid)
    resumed = _train(str(shards), "--out", str(run), *args[:2], "--max-steps", "3",
                     "--val-split", "none", "--resume")  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 3]  # one record per step: the refused starts wrote nothing


def _lock_is_free(run: Path) -> bool:
    """Whether this process can take RUN's lock now (a new open file: flock sees a rival)."""
    if not (run / LOCK).exists():
        return True
    fd = os.open(run / LOCK, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_lock_is_held_while_training_and_released_after_each_run(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``fbseg study`` needs: trainings called in-process one after the other on one RUN;
    each holds the lock (with this process's pid) while it trains and releases it at the end,
    also when it fails."""
    from feedbackseg.training.train import TrainError, train

    run = tmp_path / "run"
    real, seen = TRAIN_STEPS["erfnet"], []

    def watching(*args, **kwargs):
        seen.append((_lock_is_free(run), (run / LOCK).read_text().split()[0]))
        if len(seen) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setitem(TRAIN_STEPS, "erfnet", watching)
    config = dataclasses.replace(_config(shards, run), checkpoint_every=1)
    assert train(config, log=lambda message: None).step == 2
    assert _lock_is_free(run)
    with pytest.raises(KeyboardInterrupt):
        train(dataclasses.replace(config, max_steps=4, resume=True), log=lambda message: None)
    assert _lock_is_free(run)
    assert seen == [(False, str(os.getpid()))] * 3
    with pytest.raises(TrainError, match="holds a run already"):  # released after a refusal too
        train(config, log=lambda message: None)
    assert _lock_is_free(run)
    from feedbackseg.runs.runlock import run_lock

    with run_lock(run):  # a caller (the study) may hold the lock around a training
        assert not _lock_is_free(run)
        monkeypatch.undo()
        assert train(dataclasses.replace(config, overwrite=True), log=lambda m: None).step == 2
        assert not _lock_is_free(run)  # still the caller's
    assert _lock_is_free(run)
