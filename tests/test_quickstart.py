"""The README's quick start: the same script, end to end, at a tiny size."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _fenced_blocks(section: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:bash|sh)?\n(.*?)```", body, re.S)


def test_readme_quick_start_runs_the_script_and_the_ci_tests() -> None:
    first, second = _fenced_blocks("Quick start")[:2]
    assert first.count("\n") == 1 and second.count("\n") == 1  # one command line each
    assert "bash docs/quickstart.sh" in first and "pip install torch==2.13.0" in first
    assert "python -m pytest" in second
    ci = (REPO / ".ci" / "run").read_text()
    extras = re.search(r"pip install -e '\.\[([a-z,]+)\]'", second).group(1)
    assert f".[{extras}]" in ci and "python -m pytest -q" in ci


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_quickstart_script_end_to_end_tiny(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        QS_IMAGES="2", QS_NATIVE="64x128", QS_SIZE="32x64", QS_STEPS="2", QS_BATCH="2",
        QS_FIELDS="3", QS_WORKERS="1", QS_DOCS="", OMP_NUM_THREADS="1",
    )  # fmt: skip
    out = tmp_path / "demo"
    done = subprocess.run(["bash", str(REPO / "docs" / "quickstart.sh"), str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    for rel in [
        "shards/manifest.json", "runs/erfnet/best.pt", "runs/feedback/eval.json", "compare.md",
        "pictures/field_stats.png", "pictures/preview/overview.png",
        "pictures/preview/cn2_sweep.png", "pictures/training_feedback.png",
        "pictures/per_class_iou.png",
    ]:  # fmt: skip
        assert (out / rel).is_file(), rel
    assert list((out / "pictures" / "predictions").glob("*_seg.png"))
    assert "| erfnet" in (out / "compare.md").read_text().replace("|erfnet", "| erfnet")
    assert "Outputs:" in done.stdout
    # It does not present its own 160-step comparison as a result: it prints the study's.
    assert "not which method is better" in done.stdout
    if (REPO / "docs" / "study" / "results.md").is_file():
        tail = done.stdout.split("What it")[-1]
        assert "erfnet-clean" in tail and "feedback" in tail and "Harm of turbulence" in tail
