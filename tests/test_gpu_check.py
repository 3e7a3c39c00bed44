"""benchmarks/gpu_check.sh in its dry form (CPU, tiny): every section runs and is reported.

No timing is asserted; the GPU form is run by hand on a machine with CUDA (see the script).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_form(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((tmp_path / "gpu_check_dry.json").read_text())
    assert data["form"] == "dry" and data["device"] == "cpu"
    rows = data["throughput"]
    assert {r["mode"] for r in rows} == {"erfnet", "restore-seg", "feedback"}
    assert {r["precision"] for r in rows if r["mode"] == "erfnet"} == {
        "float32", "tf32", "bf16-amp", "channels-last"
    }  # fmt: skip
    assert all(r["ok"] and r["images_per_s"] > 0 for r in rows), rows
    # the same device twice: one step's losses must be identical (determinism of the step)
    (eq,) = data["equality"]
    assert eq["loss_seg_rel_diff"] == 0.0 and eq["loss_l1_rel_diff"] == 0.0
    assert data["ddp"]["returncode"] == 0 and data["ddp"]["steps_logged"] == 3
    assert [r["cell"] for r in data["grid"]] == ["erfnet", "restore-seg", "feedback"]
    assert all(r["steps"] == 1 and r["best_miou"] is not None for r in data["grid"])
    aug = data["augment"]
    assert {(tuple(r["size"]), r["batch"], r["blur"]) for r in aug["throughput"]} == {
        ((32, 64), b, blur) for b in (1, 2) for blur in (False, True)
    }
    assert all(r["ok"] and r["frames_per_s"] > 0 for r in aug["throughput"]), aug
    eq = aug["equality"]
    assert eq["field_max_abs_diff"] < 1e-4 and eq["warp_uint8_max_diff"] <= 1
    assert eq["blur_uint8_max_diff"] <= 1 and aug["online_training"]["steps"] == 3
    table = (tmp_path / "gpu_check_dry.md").read_text()
    assert "| augment size | batch | blur |" in table and "online training: 3 steps" in table
    assert "| feedback | 32 | float32 |" in table and "DDP (gloo" in table
    assert not (tmp_path / "gpu_check_work_dry").exists()  # scratch removed
