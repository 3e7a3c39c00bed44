"""The restorer options beyond the paper (--flow-init, --mode restore, --pretrained-restorer,
--flow-loss, --restorer-bn) and the honest restoration diagnostics
(feedbackseg.evaluation.restoration).

Each option changes what it says and nothing else; the default path is the paper's. Tiny shards
(BMVC air at 4x its relative strength, stored with the area-averaged flow), --small, CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from feedbackseg.config import ConfigError, resolve_config
from feedbackseg.data.dataset import ShardDataset
from feedbackseg.evaluation.restoration import (
    checkpoint_restoration,
    gaussian_smooth,
    inverse_flow,
    inverse_residual,
    psnr,
    smoothed_inverse,
)
from feedbackseg.models import build_model, flow_epe
from feedbackseg.runs.checkpoints import CheckpointError, load_checkpoint, load_pretrained_restorer
from feedbackseg.training.train import train
from turbsim.pipeline.generate import generate
from turbsim.pipeline.plan import make_plan
from turbsim.pipeline.recipe import resolve_recipe
from turbsim.sources.synthetic import write_sample_tree
from turbsim_cli.fbseg_cmd import main

pytestmark = pytest.mark.usefixtures("torch_one_thread")
FAST = {"small": True, "height": 32, "batch_size": 2, "workers": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("restoration-shards")
    write_sample_tree(tmp / "cs", n=4, height=64, width=128, seed=0,
                      per_split={"train": 4, "val": 2})  # fmt: skip
    recipe = resolve_recipe(
        "bmvc2020",
        {"compression": "lzf", "size": "32x64", "store_flow": "float16", "flow_resample": "area"},
    )
    generate(make_plan(tmp / "cs", recipe), tmp / "shards")
    return tmp / "shards"


def _config(shards: Path, out: Path, **overrides):
    return resolve_config(shards, out, overrides={**FAST, **overrides})


def _quiet(_: str) -> None:
    pass


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------ the diagnostics
def test_smoothed_inverse_epe_is_zero_for_the_exact_inverse_and_grows_for_its_negation() -> None:
    rows, cols = torch.meshgrid(torch.arange(48.0), torch.arange(64.0), indexing="ij")
    field = torch.stack([2.0 * torch.sin(cols / 11), 1.5 * torch.cos(rows / 9)])[None]
    exact = inverse_flow(field)
    assert float(inverse_residual(field, exact)) < 1e-4  # smooth: a true inverse exists
    reference = smoothed_inverse(field)
    interior = (slice(None), slice(None), slice(8, -8), slice(8, -8))  # away from the border
    assert float(flow_epe(exact[interior], reference[interior])) < 0.05
    negated = float(flow_epe(-exact[interior], reference[interior]))
    assert negated > 2 * float(exact[interior].pow(2).sum(1).sqrt().mean()) * 0.9
    # smoothing a constant changes nothing; a 2 px Gaussian damps a 4 px wave strongly
    constant = torch.full((1, 2, 10, 12), 1.5)
    torch.testing.assert_close(gaussian_smooth(constant), constant)
    wave = torch.sin(cols[:, :32] * (2 * math.pi / 4)).expand(1, 2, 48, 32)
    assert float(gaussian_smooth(wave)[..., 8:-8].abs().max()) < 0.01  # interior


def test_rough_fields_have_no_inverse_and_the_residual_says_so(shards: Path) -> None:
    data = ShardDataset(shards, "val")
    field = torch.from_numpy(data.flow(0))[None]
    plain = float(inverse_residual(field, inverse_flow(field)))
    smooth = float(inverse_residual(gaussian_smooth(field), smoothed_inverse(field)))
    assert plain > 0.5 and smooth < plain / 2


def test_train_and_val_gains_are_measured_on_their_own_images(shards: Path, tmp_path: Path) -> None:
    train(_config(shards, tmp_path / "r", mode="restore", max_steps=2, val_every=2), _quiet)
    best = tmp_path / "r" / "best.pt"
    for split in ("train", "val"):
        metrics = checkpoint_restoration(best, shards, split, device="cpu", limit=2)
        data = ShardDataset(shards, split, height=32)
        want = np.mean([psnr(data[i]["distorted"][None], data[i]["clean"][None])[0]
                        for i in range(2)])  # fmt: skip
        assert metrics["psnr_distorted"] == pytest.approx(float(want), rel=1e-6)
        assert metrics["samples"] == 2 and metrics["flow_resample"] == "area"
        assert metrics["psnr_gain_db"] == pytest.approx(
            metrics["psnr_restored"] - metrics["psnr_distorted"]
        )


# ---------------------------------------------------------------------------- the options
def test_flow_init_zero_is_the_identity_warp_and_changes_nothing_else() -> None:
    torch.manual_seed(3)
    paper = build_model("restore-seg", 19, small=True)
    torch.manual_seed(3)
    zero = build_model("restore-seg", 19, small=True, flow_init="zero")
    x = torch.rand(2, 3, 32, 64)
    zero.eval()
    restored, flow = zero.restorer(x, return_flow=True)
    assert torch.equal(flow, torch.zeros_like(flow))
    torch.testing.assert_close(restored, x, atol=2e-5, rtol=0)  # grid_sample rounding
    a, b = paper.state_dict(), zero.state_dict()
    differ = {k for k in a if not torch.equal(a[k], b[k])}
    assert differ == {"restorer.last.weight", "restorer.last.bias"}


def test_restorer_bn_batch_keeps_batch_statistics_at_inference() -> None:
    torch.manual_seed(0)
    running = build_model("restore", 19, small=True).eval()
    torch.manual_seed(0)
    batch = build_model("restore", 19, small=True, restorer_bn="batch").eval()
    x = torch.rand(4, 3, 32, 64)
    with torch.no_grad():
        one = batch.restorer.predict_flow(x[:1])
        two = batch.restorer.predict_flow(x[:2])[:1]
        r1 = running.restorer.predict_flow(x[:1])
        r2 = running.restorer.predict_flow(x[:2])[:1]
    assert not torch.equal(one, two)  # the batch's statistics enter each output
    torch.testing.assert_close(r1, r2)  # running statistics: per-image outputs
    assert all(m.training for m in batch.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_default_options_are_the_paper_and_leave_the_run_unchanged(
    shards: Path, tmp_path: Path
) -> None:
    explicit = {"flow_init": "paper", "restorer_bn": "running", "flow_loss": "none"}
    a = train(_config(shards, tmp_path / "a", mode="restore-seg", max_steps=2, log_every=1,
                      seed=4), _quiet)  # fmt: skip
    b = train(_config(shards, tmp_path / "b", mode="restore-seg", max_steps=2, log_every=1,
                      seed=4, **explicit), _quiet)  # fmt: skip
    assert a.step == b.step == 2
    losses = [[(r["loss_seg"], r["loss_l1"]) for r in _records(tmp_path / run)
               if r["kind"] == "train"] for run in "ab"]  # fmt: skip
    assert losses[0] == losses[1]
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert not set(explicit) & set(saved) and "pretrained_restorer" not in saved
    # zero init changes the first losses (R's flow), nothing about the data or S
    c = tmp_path / "c"
    train(_config(shards, c, mode="restore-seg", max_steps=2, log_every=1, seed=4,
                  flow_init="zero"), _quiet)  # fmt: skip
    first = [r for r in _records(c) if r["kind"] == "train"][0]
    assert first["loss_l1"] != losses[0][0][1]
    assert json.loads((c / "config.json").read_text())["flow_init"] == "zero"


def test_restore_mode_trains_validates_resumes_and_evaluates(shards: Path, tmp_path: Path) -> None:
    common = {"mode": "restore", "seed": 2, "log_every": 1, "val_every": 2}
    whole = train(_config(shards, tmp_path / "w", max_steps=4, **common), _quiet)
    train(_config(shards, tmp_path / "s", max_steps=2, **common), _quiet)
    train(_config(shards, tmp_path / "s", max_steps=4, resume=True, **common), _quiet)
    a = load_checkpoint(tmp_path / "w" / "last.pt")
    b = load_checkpoint(tmp_path / "s" / "last.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert whole.best_miou is None and whole.best_psnr_gain_db is not None
    val = [r for r in _records(tmp_path / "w") if r["kind"] == "val"]
    assert [r["step"] for r in val] == [2, 4]
    assert {"val_psnr_gain_db", "val_flow_epe_smooth_px", "val_flow_cosine_smooth"} <= set(val[0])
    assert max(r["val_psnr_gain_db"] for r in val) == whole.best_psnr_gain_db
    assert all(r["loss_seg"] == 0.0 for r in _records(tmp_path / "w") if r["kind"] == "train")
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "w" / "best.pt"), str(shards),
                                       "--device", "cpu", "--json", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "restoration on 2 images" in result.output and "mIoU" not in result.output
    saved = json.loads(out.read_text())
    assert saved["mode"] == "restore" and "flow_epe_smooth_px" in saved["restoration"]


def test_pretrained_restorer_starts_r_from_a_restore_run_or_an_original_file(
    shards: Path, tmp_path: Path
) -> None:
    train(_config(shards, tmp_path / "r", mode="restore", max_steps=2, val_every=2), _quiet)
    source = load_checkpoint(tmp_path / "r" / "best.pt")["model"]
    for mode in ("restore-seg", "feedback"):
        model = build_model(mode, 19, small=True)
        notes = load_pretrained_restorer(model.restorer, tmp_path / "r" / "best.pt")
        for key, value in model.restorer.state_dict().items():
            if not key.startswith("trans_block."):
                assert torch.equal(value, source[f"restorer.{key}"]), key
        assert ("trans_block" in " ".join(notes)) == (mode == "feedback")
    original = tmp_path / "rmodel_best.pth"  # the original release's layout: a bare state dict
    plain = build_model("restore", 19, small=True).restorer
    torch.save(plain.state_dict(), original)
    target = build_model("restore-seg", 19, small=True).restorer
    load_pretrained_restorer(target, original)
    assert torch.equal(target.last.weight, plain.last.weight)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_pretrained_restorer(build_model("restore", 19, small=False).restorer, original)
    erfnet = tmp_path / "e"
    train(_config(shards, erfnet, mode="erfnet", max_steps=1), _quiet)
    with pytest.raises(CheckpointError, match="holds no restorer"):
        load_pretrained_restorer(plain, erfnet / "last.pt")
    # through the trainer: the feedback run's R starts from the restore run's weights
    run = tmp_path / "f"
    train(_config(shards, run, mode="feedback", max_steps=1, iterations=2,
                  pretrained_restorer=str(tmp_path / "r" / "best.pt")), _quiet)  # fmt: skip
    assert json.loads((run / "config.json").read_text())["pretrained_restorer"].endswith("best.pt")


def test_flow_loss_trains_r_on_the_smoothed_inverse(shards: Path, tmp_path: Path) -> None:
    for turbulence in ("stored", "online"):
        run = tmp_path / turbulence
        train(_config(shards, run, mode="restore", max_steps=2, log_every=1, flow_loss="epe",
                      flow_weight=0.5, turbulence=turbulence), _quiet)  # fmt: skip
        records = [r for r in _records(run) if r["kind"] == "train"]
        assert all(math.isfinite(r["loss_l1"]) for r in records)
    # the flow target of a stored sample is the smoothed inverse of its stored flow
    data = ShardDataset(shards, "train", height=32, return_flow=True)
    item = data[0]
    torch.testing.assert_close(item["flow"], torch.from_numpy(data.flow(0)))


def test_dataset_flow_follows_crops_and_flips(shards: Path) -> None:
    data = ShardDataset(shards, "train", height=32, augment=True, crop=(16, 32), seed=5,
                        return_flow=True)  # fmt: skip
    plain = ShardDataset(shards, "train", height=32)
    for index in range(len(data)):
        item = data[index]
        full = torch.from_numpy(plain.flow(index))
        clean = plain[index]["clean"]
        # locate the crop by matching the clean image, then check the flow moved with it
        found = False
        for flip in (False, True):
            source = clean.flip(-1) if flip else clean
            field = torch.stack([full[0].flip(-1), -full[1].flip(-1)]) if flip else full
            for top in range(17):
                for left in range(33):
                    if torch.equal(source[:, top : top + 16, left : left + 32], item["clean"]):
                        torch.testing.assert_close(
                            item["flow"], field[:, top : top + 16, left : left + 32]
                        )
                        found = True
        assert found


def test_bad_option_combinations_are_one_line_errors(shards: Path, tmp_path: Path) -> None:
    for values, key in (
        ({"mode": "erfnet", "flow_init": "zero"}, "flow_init"),
        ({"mode": "erfnet", "flow_loss": "epe"}, "flow_loss"),
        ({"mode": "restore", "pretrained_encoder": "x.pth"}, "pretrained_encoder"),
        ({"mode": "restore", "flow_weight": 0.0}, "flow_weight"),
        ({"mode": "restore", "turbulence_render": "stored"}, "turbulence_render"),
        ({"mode": "feedback", "restorer_bn": "frozen"}, "restorer_bn"),
    ):
        with pytest.raises(ConfigError) as info:
            _config(shards, tmp_path / "x", **values)
        assert info.value.key == key
    # the EPE loss on shards without a stored flow
    write_sample_tree(tmp_path / "cs", n=1, height=64, width=128, seed=0)
    generate(make_plan(tmp_path / "cs", resolve_recipe(None, {"compression": "none"})),
             tmp_path / "noflow")  # fmt: skip
    result = CliRunner().invoke(main, ["train", str(tmp_path / "noflow"), "--out",
                                       str(tmp_path / "run"), "--mode", "restore",
                                       "--flow-loss", "epe", "--small", "--height", "32",
                                       "--max-steps", "1", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 2 and "stores no flow" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_fold_fraction_of_the_diagnostics_is_turbsims(shards: Path) -> None:
    from feedbackseg.evaluation.restoration import _fold_fraction
    from turbsim.views.folding import fold_fraction

    field = ShardDataset(shards, "val").flow(0)
    assert _fold_fraction(torch.from_numpy(field)[None]) == pytest.approx(fold_fraction(field))
