"""``fbseg study``: study files, runs, resumption, per-run evaluation and the aggregates."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import feedbackseg.training.train as train_module
from feedbackseg.config import ConfigError, TrainConfig, resolve_config
from feedbackseg.data.dataset import ShardDataset
from feedbackseg.evaluation.restoration import inverse_flow
from feedbackseg.models.flow import warp
from feedbackseg.study.records import EVAL_NAME
from feedbackseg.study.report import PAPER, aggregate, ci95
from feedbackseg.study.study_file import (
    Cell,
    Study,
    StudyError,
    load_study,
    parse_only,
    parse_study,
    run_dir,
)
from turbsim.pipeline.generate import generate
from turbsim.pipeline.plan import make_plan
from turbsim.pipeline.recipe import resolve_recipe
from turbsim.sources.synthetic import write_sample_tree
from turbsim_cli.fbseg_cmd import main

TINY = """
seeds = [0, 1]
[defaults]
small = true
height = 32
batch_size = 2
max_steps = 2
log_every = 1
workers = 0
device = "cpu"
[cells.erfnet-clean]
mode = "erfnet"
input = "clean"
[cells.erfnet]
mode = "erfnet"
"""

CONTRACT_TOP = {"cells", "harm", "resolution", "steps", "paper"}
CONTRACT_CELL = {
    "seeds", "miou", "miou_mean", "miou_ci95", "per_class_mean", "recovered", "recovered_ci95",
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """4 train and 2 val samples of 64 x 128 with the true displacement stored (int16)."""
    tmp = tmp_path_factory.mktemp("study-shards")
    per_split = {"train": 4, "val": 2}
    write_sample_tree(tmp / "cs", n=4, height=64, width=128, seed=0, per_split=per_split,
                      splits=tuple(per_split))  # fmt: skip
    recipe = resolve_recipe(
        None,
        {"compression": "lzf", "shard_size": 4, "cn2": 1e-12, "splits": list(per_split),
         "store_flow": "int16"},
    )  # fmt: skip
    generate(make_plan(tmp / "cs", recipe), tmp / "shards")
    return tmp / "shards"


def _cli(*args: str):
    return CliRunner().invoke(main, [*map(str, args)])


def _one_line_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    return errors[0]


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


# --------------------------------------------------------------------------- study files
def test_shipped_studies_parse_with_the_required_cells() -> None:
    cpu = load_study("cpu")
    assert list(cpu.cells) == ["erfnet-clean", "erfnet", "restore-seg", "feedback", "feedback-bf16"]
    assert cpu.cells["erfnet-clean"].input == "clean" and cpu.cells["erfnet-clean"].mode == "erfnet"
    assert cpu.cells["feedback"].loss == "cb-ifl" and cpu.cells["feedback-bf16"].values["amp"]
    assert all(c.values["small"] for c in cpu.cells.values()) and cpu.seeds == (0, 1, 2)
    paper = load_study("paper")
    assert {c.loss for c in paper.cells.values() if c.mode == "feedback"} == {"ce", "ifl", "cb-ifl"}
    assert not any(c.values.get("small") for c in paper.cells.values())


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[cells.a\nmode = 1", "not valid TOML"),
        ("[cells.a]\nmode = 'erfnet'\nbogus = 1\n", "[cells.a]: unknown key 'bogus'"),
        ("[cells.a]\nmode = 'unet'\n", "[cells.a]: mode: unknown mode 'unet'"),
        ("[cells.a]\nmode = 'erfnet'\nseed = 3\n", "'seed' is set by the study"),
        ("grid = 1\n[cells.a]\nmode = 'erfnet'\n", "unknown key 'grid'"),
        ("seeds = []\n[cells.a]\nmode = 'erfnet'\n", "seeds must be distinct integers"),
        ("[defaults]\nheight = 36\n[cells.a]\nmode = 'feedback'\n", "not a multiple of 16"),
        ("description = 'x'\n", "no cells"),
    ],
)
def test_bad_study_files_raise_one_line(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(StudyError) as caught:
        parse_study(text, "s.toml")
    assert needle in str(caught.value) and str(caught.value).startswith("s.toml")
    assert caught.value.key is None and "\n" not in str(caught.value)


def test_cli_errors_unknown_cell_bad_file_unknown_study(tmp_path: Path) -> None:
    shards = tmp_path / "shards"  # refused before the shards are read
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    out = tmp_path / "S"
    line = _one_line_error(_cli("study", shards, "--out", out, "--study", spec, "--only", "x"), 2)
    assert "--only" in line and "unknown cell 'x'" in line and "erfnet-clean, erfnet" in line
    line = _one_line_error(
        _cli("study", shards, "--out", out, "--study", spec, "--only", "erfnet:7"), 2
    )
    assert "seed 7 is not one of the study's seeds (0, 1)" in line
    bad = tmp_path / "bad.toml"
    bad.write_text("[cells.a]\nmode = 'unet'\n")
    line = _one_line_error(_cli("study", shards, "--out", out, "--study", bad), 1)
    assert line.startswith(f"Error: {bad}: [cells.a]: mode: unknown mode 'unet'")
    line = _one_line_error(_cli("study", shards, "--out", out, "--study", "nope"), 2)
    assert "--study" in line and "shipped study (cpu, online, paper)" in line
    line = _one_line_error(_cli("study", shards, "--out", out, "--study", spec, "--seeds", "a"), 2)
    assert "--seeds" in line
    assert not out.exists()  # nothing written on a refused start


def test_parse_only() -> None:
    study = parse_study(TINY, "t")
    assert parse_only("erfnet", study) == [("erfnet", 0), ("erfnet", 1)]
    assert parse_only("erfnet-clean:1", study) == [("erfnet-clean", 1)]
    with pytest.raises(StudyError) as caught:
        parse_only("erfnet:x", study)
    assert caught.value.key == "only"


# --------------------------------------------------------------------------- input choice
def test_input_key_defaults_and_validation(shards: Path, tmp_path: Path) -> None:
    config = resolve_config(shards, tmp_path / "r")
    assert config.input == "distorted" and "input" not in config.to_dict()  # config.json as before
    clean = resolve_config(shards, tmp_path / "r", overrides={"input": "clean"})
    assert clean.to_dict()["input"] == "clean"
    assert TrainConfig.from_dict(json.loads(clean.to_json())) == clean
    with pytest.raises(ConfigError) as caught:
        resolve_config(shards, tmp_path / "r", overrides={"input": "blurred"})
    assert caught.value.key == "input"


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


# --------------------------------------------------------------------------- aggregates
def _fake_eval(miou: float, clean: float | None = None, **extra) -> dict:
    per_class = {"road": miou, "sky": None}
    data = {"miou": miou, "per_class": per_class, "resolution": [32, 64], "steps": 5, **extra}
    if clean is not None:
        data["miou_clean"] = clean
    return data


def test_aggregates_and_95_interval_by_hand() -> None:
    study = Study(
        "hand",
        {
            "erfnet-clean": Cell("erfnet-clean", {"mode": "erfnet", "input": "clean"}),
            "erfnet": Cell("erfnet", {"mode": "erfnet"}),
            "feedback": Cell("feedback", {"mode": "feedback"}),
        },
        seeds=(0, 1, 2),
    )
    clean_on_clean = [0.50, 0.54, 0.52]
    erfnet = [0.40, 0.41, 0.45]
    feedback = [0.45, 0.47, 0.46]
    evaluations = {
        "erfnet-clean": {s: _fake_eval(0.3, c) for s, c in enumerate(clean_on_clean)},
        "erfnet": {s: _fake_eval(m) for s, m in enumerate(erfnet)},
        "feedback": {
            s: _fake_eval(
                m,
                psnr_restored=30.0 + s,
                psnr_distorted=25.0,
                flow_epe_px=0.5,
                flow_epe_zero_px=2.0,
                miou_per_iteration=[m - 0.02 * s, m - 0.01, m],
            )
            for s, m in enumerate(feedback)  # fmt: skip
        },
    }
    results = aggregate(study, evaluations)
    t = 4.302652729749464  # scipy.stats.t.ppf(0.975, 2)
    cell = results["cells"]["feedback"]
    assert cell["miou"] == pytest.approx([45.0, 47.0, 46.0])
    assert cell["miou_mean"] == pytest.approx(46.0)
    assert cell["miou_ci95"] == pytest.approx(t * 1.0 / math.sqrt(3))  # sample std = 1
    harm = [10.0, 13.0, 7.0]  # clean-on-clean minus erfnet, per seed
    assert results["harm"]["mean"] == pytest.approx(np.mean(harm)) == 10.0
    assert results["harm"]["ci95"] == pytest.approx(t * 3.0 / math.sqrt(3))  # s = 3
    recovered = [5 / 10, 6 / 13, 1 / 7]
    assert cell["recovered"] == pytest.approx(np.mean(recovered))
    assert cell["recovered_ci95"] == pytest.approx(t * np.std(recovered, ddof=1) / math.sqrt(3))
    assert results["cells"]["erfnet"]["recovered"] == 0.0
    assert cell["psnr_restored"] == pytest.approx(31.0) and cell["flow_epe_px"] == 0.5
    assert cell["per_class_mean"] == {"road": pytest.approx(46.0), "sky": None}
    assert cell["flow_epe_zero_px"] == 2.0
    assert cell["miou_feedback_zeroed"] == pytest.approx([45.0, 45.0, 42.0])
    assert cell["miou_per_iteration_mean"] == pytest.approx([44.0, 45.0, 46.0])
    assert "miou_feedback_zeroed" not in results["cells"]["erfnet"]
    assert results["cells"]["erfnet-clean"]["miou_clean"] == pytest.approx([50.0, 54.0, 52.0])
    assert "miou_clean" not in cell and "psnr_restored" not in results["cells"]["erfnet"]
    assert set(results) == CONTRACT_TOP and results["resolution"] == "32x64"
    assert results["steps"] == 5 and results["paper"]["feedback_over_erfnet"] == 17.41
    assert ci95([1.0]) is None
    one_seed = aggregate(
        Study("one", {"erfnet": study.cells["erfnet"]}, seeds=(0,)),
        {"erfnet": {0: _fake_eval(0.4)}},
    )
    assert one_seed["cells"]["erfnet"]["miou_ci95"] is None
    assert one_seed["harm"] == {"mean": None, "ci95": None}  # no clean-trained ERFNet cell
    assert PAPER["restore_seg_over_erfnet"] == 12.71 and PAPER["cb_ifl_share"] == 1.9


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
