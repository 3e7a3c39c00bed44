"""``fbseg study`` (feedbackseg/study/runner.py): runs, resumption, per-run evaluation, the
results contract. The study file: test_study_file.py; the aggregates: test_study_report.py."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from study_helpers import CONTRACT_TOP, TINY, _cli, _one_line_error

import feedbackseg.training.train as train_module
from feedbackseg.config import resolve_config
from feedbackseg.data.dataset import ShardDataset
from feedbackseg.evaluation.restoration import inverse_flow
from feedbackseg.models.flow import warp
from feedbackseg.study.records import EVAL_NAME
from feedbackseg.study.study_file import (
    load_study,
    run_dir,
)

CONTRACT_CELL = {
    "seeds", "miou", "miou_mean", "miou_ci95", "per_class_mean", "recovered", "recovered_ci95",
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def study(shards: Path, tmp_path_factory) -> dict:
    """The tiny study run as a killed-and-resumed one: ``--only erfnet:0`` first (one run),
    then the whole study, which must reuse that run."""
    tmp = tmp_path_factory.mktemp("study")
    spec = tmp / "tiny.toml"
    spec.write_text(TINY)
    out = tmp / "STUDY"
    first = _cli("study", shards, "--out", out, "--study", spec, "--only", "erfnet:0")
    assert first.exit_code == 0, first.output
    assert "still to finish" in first.output
    metrics = run_dir(out, "erfnet", 0) / "metrics.jsonl"
    before = (metrics.read_bytes(), metrics.stat().st_mtime_ns)
    runs_after_only = sorted(p.relative_to(out).as_posix() for p in out.glob("runs/*/*"))
    full = _cli("study", shards, "--out", out, "--study", spec)
    assert full.exit_code == 0, full.output
    return {
        "out": out,
        "spec": spec,
        "first": first,
        "full": full,
        "before": before,
        "metrics": metrics,
        "runs_after_only": runs_after_only,
    }


def test_dataset_clean_input_feeds_the_clean_image(shards: Path) -> None:
    distorted = ShardDataset(shards, "val", height=32)
    clean = ShardDataset(shards, "val", height=32, input="clean")
    a, b = distorted[1], clean[1]
    assert torch.equal(b["distorted"], a["clean"]) and torch.equal(b["clean"], a["clean"])
    assert not torch.equal(a["distorted"], a["clean"]) and torch.equal(a["label"], b["label"])


def test_training_on_clean_input_reads_clean_images(shards: Path, tmp_path: Path, monkeypatch):
    seen = []
    original = ShardDataset.__init__

    def recording(self, *args, **kwargs):
        seen.append((args[1] if len(args) > 1 else kwargs.get("split"), kwargs.get("input")))
        original(self, *args, **kwargs)

    monkeypatch.setattr(ShardDataset, "__init__", recording)
    overrides = {"small": True, "height": 32, "batch_size": 2, "workers": 0, "device": "cpu",
                 "mode": "erfnet", "max_steps": 1, "input": "clean"}  # fmt: skip
    train_module.train(resolve_config(shards, tmp_path / "run", overrides=overrides), log=None)
    assert ("train", "clean") in seen
    # best.pt is chosen on the input the model is trained for (clean val here); the study then
    # evaluates best.pt on the distorted and the clean val split
    assert ("val", "clean") in seen


# --------------------------------------------------------------------------- flow truth
def test_inverse_flow_undoes_the_displacement() -> None:
    constant = torch.tensor([1.5, -2.25]).view(1, 2, 1, 1).expand(1, 2, 16, 24)
    assert torch.allclose(inverse_flow(constant), -constant)
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(48.0), indexing="ij")
    field = torch.stack([2 * torch.sin(cols / 7), 1.5 * torch.cos(rows / 5)])[None]
    g = inverse_flow(field)
    residual = g + warp(field, g)  # G(p) + F(p + G(p)) = 0: perfect restoration
    assert residual.abs().max() < 1e-4
    assert (g + field).abs().max() > 0.1  # and it is not simply -F
    smooth = (torch.sin(rows / 4) + torch.cos(cols / 6)).double()  # bilinear-friendly scene
    image = smooth.expand(1, 3, 32, 48)
    distorted = warp(image, field.double())
    restored = warp(distorted, g.double())
    first_order = warp(distorted, -field.double())
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))  # away from clamped borders
    error = (restored - image)[inner].abs().mean()
    assert error < 0.1 * (distorted - image)[inner].abs().mean()
    assert error < 0.5 * (first_order - image)[inner].abs().mean()


# --------------------------------------------------------------------------- a real study
@pytest.mark.slow
def test_only_runs_one_run_and_the_full_study_reuses_it(study: dict) -> None:
    assert study["runs_after_only"] == ["runs/erfnet/seed-0"]
    out = study["out"]
    assert (out / "results.json").is_file() and "wrote results.json" in study["full"].output
    assert study["metrics"].read_bytes() == study["before"][0]  # not retrained, not rewritten
    assert study["metrics"].stat().st_mtime_ns == study["before"][1]
    assert "1 run(s) trained" in study["first"].output
    assert "3 run(s) trained, 1 found finished" in study["full"].output
    for cell in ("erfnet-clean", "erfnet"):
        for seed in (0, 1):
            assert (run_dir(out, cell, seed) / EVAL_NAME).is_file()


@pytest.mark.slow
def test_results_follow_the_contract(study: dict) -> None:
    out = study["out"]
    results = json.loads((out / "results.json").read_text())
    assert set(results) == CONTRACT_TOP
    assert set(results["cells"]) == {"erfnet-clean", "erfnet"}
    assert set(results["cells"]["erfnet"]) == CONTRACT_CELL
    assert set(results["cells"]["erfnet-clean"]) == CONTRACT_CELL | {"miou_clean"}
    assert set(results["harm"]) == {"mean", "ci95"} and results["resolution"] == "32x64"
    assert results["steps"] == 2
    for cell, summary in results["cells"].items():
        evals = [json.loads((run_dir(out, cell, s) / EVAL_NAME).read_text()) for s in (0, 1)]
        assert summary["seeds"] == [0, 1]
        assert summary["miou"] == [100 * e["miou"] for e in evals]
        assert summary["miou_mean"] == pytest.approx(np.mean(summary["miou"]))
        spread = abs(summary["miou"][0] - summary["miou"][1])  # n = 2: s = |a - b| / sqrt(2)
        assert summary["miou_ci95"] == pytest.approx(12.706204736174707 * spread / 2)
    clean = results["cells"]["erfnet-clean"]["miou_clean"]
    harm = [c - d for c, d in zip(clean, results["cells"]["erfnet"]["miou"], strict=True)]
    assert results["harm"]["mean"] == pytest.approx(np.mean(harm))
    text = (out / "results.md").read_text()
    assert "| erfnet-clean | erfnet |" in text and "+17.41" in text and "12.71" in text
    png = out / "study.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" or "not drawn" in text


@pytest.mark.slow
def test_fbseg_eval_reproduces_a_runs_number(study: dict, shards: Path, tmp_path: Path) -> None:
    out = study["out"]
    results = json.loads((out / "results.json").read_text())
    for cell, seed, extra, key in (
        ("erfnet", 1, [], "miou"),
        ("erfnet-clean", 0, ["--input", "clean"], "miou_clean"),
    ):
        target = tmp_path / f"{cell}-{seed}.json"
        best = run_dir(out, cell, seed) / "best.pt"
        result = _cli("eval", best, shards, "--json", target, *extra)
        assert result.exit_code == 0, result.output
        miou = json.loads(target.read_text())["miou"]
        assert 100 * miou == results["cells"][cell][key][seed]  # exactly, not approximately


@pytest.mark.slow
def test_rerun_of_a_finished_study_trains_nothing(study: dict, shards: Path) -> None:
    again = _cli("study", shards, "--out", study["out"], "--study", study["spec"])
    assert again.exit_code == 0, again.output
    assert "0 run(s) trained, 4 found finished" in again.output
    assert study["metrics"].read_bytes() == study["before"][0]


@pytest.mark.slow
def test_restoration_cells_report_psnr_flow_error_and_zeroed_feedback(
    shards: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "r.toml"
    spec.write_text(TINY.replace("seeds = [0, 1]", "seeds = [0]").split("[cells.")[0]
                    + "[cells.restore-seg]\nmode = 'restore-seg'\n"
                    + "[cells.feedback]\nmode = 'feedback'\n")  # fmt: skip
    out = tmp_path / "S"
    result = _cli("study", shards, "--out", out, "--study", spec)
    assert result.exit_code == 0, result.output
    cells = json.loads((out / "results.json").read_text())["cells"]
    summary = cells["restore-seg"]
    restoration = {
        "psnr_restored", "psnr_distorted", "flow_epe_px", "flow_epe_zero_px", "flow_length_px",
        "psnr_oracle_flow", "flow_epe_smooth_zero_px", "psnr_warp_reference",
        "inverse_residual_px", "fold_fraction_stored",
    } | {
        f"{key}{suffix}"
        for key in ("psnr_gain_db", "psnr_gain_train_db", "flow_epe_smooth_px",
                    "flow_cosine_smooth")
        for suffix in ("", "_per_seed", "_ci95")
    }  # fmt: skip
    assert set(summary) == CONTRACT_CELL | restoration
    assert summary["recovered"] is None  # no ERFNet cells: no harm
    assert 0 < summary["flow_epe_px"] < 20 and math.isfinite(summary["psnr_restored"])
    dataset = ShardDataset(shards, "val", height=32)
    mse = [float((dataset[i]["distorted"] - dataset[i]["clean"]).pow(2).mean()) for i in (0, 1)]
    assert summary["psnr_distorted"] == pytest.approx(np.mean([-10 * math.log10(m) for m in mse]),
                                                      rel=1e-5)  # fmt: skip
    # The EPE of a zero flow is the mean length of the true inverse displacement.
    lengths = [
        float(inverse_flow(torch.from_numpy(dataset.flow(i))[None]).pow(2).sum(1).sqrt().mean())
        for i in (0, 1)
    ]
    assert summary["flow_epe_zero_px"] == pytest.approx(np.mean(lengths), rel=1e-5)
    assert cells["feedback"]["flow_epe_zero_px"] == summary["flow_epe_zero_px"]
    # The ceiling of a warp: the input warped with the true inverse displacement. Tilt only
    # (no blur) here, so it restores much of the image.
    oracle = []
    for i in (0, 1):
        item = dataset[i]
        inverse = inverse_flow(torch.from_numpy(dataset.flow(i))[None])
        restored = warp(item["distorted"][None], inverse).clamp(0, 1)
        oracle.append(-10 * math.log10(float((restored[0] - item["clean"]).pow(2).mean())))
    assert summary["psnr_oracle_flow"] == pytest.approx(np.mean(oracle), rel=1e-5)
    assert summary["psnr_oracle_flow"] > summary["psnr_distorted"] + 2
    # Feedback: iteration 1 runs with a zero feedback signal, so its mIoU is what the same
    # weights give with one iteration (T = 1 feeds delta = 0).
    feedback = cells["feedback"]
    assert set(feedback) == CONTRACT_CELL | restoration | {
        "miou_feedback_zeroed", "miou_per_iteration_mean", "feedback_flow_change_px",
    }  # fmt: skip
    from feedbackseg.evaluation.inference import load_model
    from feedbackseg.models import infer

    model, _ = load_model(run_dir(out, "feedback", 0) / "best.pt", "cpu")
    change, length = [], []
    with torch.no_grad():
        for i in (0, 1):
            flows = infer(model, dataset[i]["distorted"][None], 3).flows
            change.append(float((flows[-1] - flows[0]).pow(2).sum(1).sqrt().mean()))
            length.append(float(flows[-1].pow(2).sum(1).sqrt().mean()))
    assert feedback["feedback_flow_change_px"] == pytest.approx(np.mean(change), rel=1e-5, abs=1e-9)
    assert feedback["flow_length_px"] == pytest.approx(np.mean(length), rel=1e-5)
    assert len(feedback["miou_per_iteration_mean"]) == 3
    assert feedback["miou_per_iteration_mean"][-1] == pytest.approx(feedback["miou"][0])
    best = run_dir(out, "feedback", 0) / "best.pt"
    target = tmp_path / "t1.json"
    one = _cli("eval", best, shards, "--iterations", "1", "--json", target)
    assert one.exit_code == 0, one.output
    zeroed = 100 * json.loads(target.read_text())["miou"]
    assert feedback["miou_feedback_zeroed"] == [pytest.approx(zeroed, abs=1e-9)]
    text = (out / "results.md").read_text()
    assert "n/a" in text and "feedback signal zeroed" in text and "R's flow EPE" in text
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unfinished_run_needs_resume_and_continues(shards: Path, tmp_path: Path) -> None:
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    out = tmp_path / "S"
    study = load_study(spec)
    from feedbackseg.study.runner import run_config

    killed = dataclasses.replace(run_config(study, "erfnet", 1, shards, out), max_steps=1)
    train_module.train(killed, log=None)  # a run stopped after step 1 of 2
    line = _one_line_error(_cli("study", shards, "--out", out, "--study", spec,
                                "--only", "erfnet:1"), 1)  # fmt: skip
    assert "unfinished run; pass --resume" in line
    result = _cli("study", shards, "--out", out, "--study", spec, "--only", "erfnet:1", "--resume")
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in (run_dir(out, "erfnet", 1) / "metrics.jsonl").open()]
    assert [r["step"] for r in records if r.get("kind") == "val"] == [1, 2]  # continued, kept
