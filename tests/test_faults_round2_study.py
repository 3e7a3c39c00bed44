"""``fbseg study`` under faults (round 2): a cached evaluation is bound to the checkpoint it
was computed from, a run is finished only once its final validation and best.pt are on disk,
results.json is published last, and a study folder reused with other shards says so.

Kills are injected, not timed: a child process ``os._exit``-s at the point of the fault."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import turbsim._files as files_module
from feedbackseg.runs.checkpoints import load_checkpoint
from feedbackseg.runs.rundir import read_metrics
from feedbackseg.study.records import EVAL_NAME
from feedbackseg.study.study_file import run_dir
from turbsim.pipeline.generate import generate
from turbsim.pipeline.plan import make_plan
from turbsim.pipeline.recipe import resolve_recipe
from turbsim.sources.synthetic import write_sample_tree
from turbsim_cli.fbseg_cmd import main

REPO = Path(__file__).resolve().parents[1]

#: One ERFNet cell; 4 training samples in batches of 2: an epoch is 2 steps, validated at its end.
SPEC = """
seeds = {seeds}
[defaults]
small = true
height = 32
batch_size = 2
max_steps = {steps}
log_every = 1
workers = 0
device = "cpu"
[cells.erfnet]
mode = "erfnet"
"""

#: ``fbseg study ARGS`` in a child process that dies (exit 137, no clean-up, like kill -9) at
#: FAULT: "final-validation" (when the run's last validation starts) or "after-train" (once
#: the training returned, before the study records anything).
_CHILD = r"""
import os, sys
import torch
from click.testing import CliRunner
import feedbackseg.training.train as train_module
from turbsim_cli.fbseg_cmd import main

torch.set_num_threads(1)
fault, last_step, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
if fault == "final-validation":
    real_validate = train_module.validate

    def validate(state, *a, **k):
        if state.step >= last_step:
            os._exit(137)
        return real_validate(state, *a, **k)

    train_module.validate = validate
else:
    real_train = train_module.train

    def train(*a, **k):
        real_train(*a, **k)
        os._exit(137)

    train_module.train = train
result = CliRunner().invoke(main, args)
print(result.output, end="")
sys.exit(result.exit_code)
"""


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """4 train and 2 val samples of 64 x 128."""
    tmp = tmp_path_factory.mktemp("round2-study-shards")
    per_split = {"train": 4, "val": 2}
    write_sample_tree(tmp / "cs", n=4, height=64, width=128, seed=0, per_split=per_split,
                      splits=tuple(per_split))  # fmt: skip
    recipe = resolve_recipe(
        None, {"compression": "lzf", "shard_size": 4, "cn2": 1e-12, "splits": list(per_split)}
    )
    generate(make_plan(tmp / "cs", recipe), tmp / "shards")
    return tmp / "shards"


def _spec(folder: Path, steps: int, seeds: str = "[0]") -> Path:
    path = folder / "study.toml"
    path.write_text(SPEC.format(seeds=seeds, steps=steps))
    return path


def _cli(*args: object):
    return CliRunner().invoke(main, [*map(str, args)])


@pytest.fixture(scope="module")
def finished(shards: Path, tmp_path_factory) -> Path:
    """A finished one-run study of 2 steps (copy it before changing it)."""
    tmp = tmp_path_factory.mktemp("round2-finished")
    out = tmp / "STUDY"
    result = _cli("study", shards, "--out", out, "--study", _spec(tmp, 2))
    assert result.exit_code == 0, result.output
    return out


def _copy(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "STUDY"
    shutil.copytree(finished, out)
    return out


def _eval_miou(best: Path, shards: Path, tmp_path: Path) -> float:
    """What ``fbseg eval BEST SHARDS`` reports, in %."""
    target = tmp_path / f"eval-{best.parent.name}.json"
    result = _cli("eval", best, shards, "--json", target)
    assert result.exit_code == 0, result.output
    return 100 * json.loads(target.read_text())["miou"]


def _val_steps(run: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run) if r.get("kind") == "val"]


def _child(fault: str, last_step: int, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _CHILD, fault, str(last_step), *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


# --------------------------------------------------------------------------- defect 17
@pytest.mark.slow
def test_resume_with_more_steps_evaluates_the_new_best_checkpoint(
    finished: Path, shards: Path, tmp_path: Path
) -> None:
    """max_steps 2 -> 4 and --resume: the step-2 evaluation is not reused for step 4's best.pt."""
    out = _copy(finished, tmp_path)
    result = _cli("study", shards, "--out", out, "--study", _spec(tmp_path, 4), "--resume")
    assert result.exit_code == 0, result.output
    run = run_dir(out, "erfnet", 0)
    assert _val_steps(run) == [2, 4]
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 4
    evaluation = json.loads((run / EVAL_NAME).read_text())
    assert evaluation["steps"] == 4
    assert evaluation["step"] == load_checkpoint(run / "best.pt")["step"]
    assert results["cells"]["erfnet"]["miou"] == [_eval_miou(run / "best.pt", shards, tmp_path)]


# --------------------------------------------------------------------------- defect 18
@pytest.mark.slow
def test_a_run_killed_in_its_final_validation_is_not_finished(shards: Path, tmp_path: Path) -> None:
    """Seed 1 dies in its final validation (a train record at the last step and the best.pt of
    step 2 are on disk), seed 0 dies after its training returned: a concurrent ``--only`` task
    counts neither as finished (no results from the old best.pt); --resume completes both, and
    every number is ``fbseg eval``'s on the final best.pt."""
    spec = _spec(tmp_path, 4, "[0, 1]")
    out = tmp_path / "STUDY"
    common = ("study", shards, "--out", out, "--study", spec)
    killed = _child("final-validation", 4, *common, "--only", "erfnet:1")
    assert killed.returncode == 137, (killed.stdout, killed.stderr)
    seed1 = run_dir(out, "erfnet", 1)
    assert 4 in [r["step"] for r in read_metrics(seed1)] and _val_steps(seed1) == [2]
    assert (seed1 / "best.pt").is_file()
    killed = _child("after-train", 0, *common, "--only", "erfnet:0")
    assert killed.returncode == 137, (killed.stdout, killed.stderr)
    seed0 = run_dir(out, "erfnet", 0)
    assert _val_steps(seed0) == [2, 4]
    metrics0 = (seed0 / "metrics.jsonl").read_bytes()

    other = _cli(*common, "--only", "erfnet:0", "--resume")
    assert other.exit_code == 0, other.output
    assert "1 run(s) of the study still to finish" in other.output
    assert not (out / "results.json").exists() and not (seed1 / EVAL_NAME).exists()
    assert (seed0 / "metrics.jsonl").read_bytes() == metrics0  # resumed at its end: no step taken

    full = _cli(*common, "--resume")
    assert full.exit_code == 0, full.output
    assert _val_steps(seed1) == [2, 4] and _val_steps(seed0) == [2, 4]
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 4
    expected = [_eval_miou(run / "best.pt", shards, tmp_path) for run in (seed0, seed1)]
    assert results["cells"]["erfnet"]["miou"] == expected
    again = _cli(*common)
    assert again.exit_code == 0 and "0 run(s) trained, 2 found finished" in again.output


@pytest.mark.slow
def test_results_json_is_published_last(
    finished: Path, shards: Path, tmp_path: Path, monkeypatch
) -> None:
    """A failure while writing the other result files leaves no results.json looking complete."""
    out = _copy(finished, tmp_path)
    (out / "results.json").unlink()
    real = files_module.write_text

    def failing(path, *args, **kwargs):
        if Path(path).name == "results.md":
            raise OSError(28, "No space left on device", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(files_module, "write_text", failing)
    result = _cli("study", shards, "--out", out, "--study", _spec(tmp_path, 2))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "results.md" in result.output.strip().splitlines()[-1]
    assert not (out / "results.json").exists()


# --------------------------------------------------------------------------- defect 19
@pytest.mark.slow
def test_other_shards_are_named_not_a_changed_study_file(
    finished: Path, shards: Path, tmp_path: Path
) -> None:
    """The study folder reused with other shards: one line naming both shard folders."""
    out = _copy(finished, tmp_path)
    moved = tmp_path / "other-shards"
    shutil.copytree(shards, moved)
    result = _cli("study", moved, "--out", out, "--study", _spec(tmp_path, 2))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: ") and "the shards differ" in line
    assert str(shards.resolve()) in line and str(moved.resolve()) in line
    assert "study file changed" not in line
    changed = _spec(tmp_path, 2).read_text().replace('erfnet"\n', 'erfnet"\nlr_s = 1e-3\n')
    (tmp_path / "changed.toml").write_text(changed)
    result = _cli("study", shards, "--out", out, "--study", tmp_path / "changed.toml")
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert "the study file changed" in line and "shards differ" not in line
