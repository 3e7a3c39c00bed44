"""How much the commands print: ``--quiet`` / ``--verbose``, the train and eval progress
(cli/progress_bar.py, feedbackseg.training.train ``on_step``, feedbackseg.evaluation.evaluate
``progress``), the correlation-table notice (turbsim.physics.theory) and the large-field warning
(turbsim.physics.quantities)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from feedbackseg.config import resolve_config
from feedbackseg.data.dataset import ShardDataset
from feedbackseg.evaluation.evaluate import evaluate
from feedbackseg.evaluation.inference import load_model
from feedbackseg.training.train import train
from turbsim.physics import theory
from turbsim.physics.params import REFERENCE_PARAMS, TurbulenceParams
from turbsim.physics.quantities import LARGE_FIELD_FRACTION, field_scale_warning
from turbsim.pipeline.generate import generate
from turbsim.pipeline.plan import make_plan
from turbsim.pipeline.recipe import resolve_recipe
from turbsim.sources.synthetic import write_sample_tree
from turbsim_cli.fbseg_cmd import main as fbseg
from turbsim_cli.progress_bar import QUIET, Reporter, show_library_notices
from turbsim_cli.turbsim_cmd import main as turbsim_main

FAST = ["--small", "--height", "32", "--batch-size", "2", "--workers", "0", "--device", "cpu"]

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """4 train and 2 val samples at 64 x 128."""
    tmp = tmp_path_factory.mktemp("verbosity")
    write_sample_tree(tmp / "cs", n=4, height=64, width=128, seed=0,
                      per_split={"train": 4, "val": 2})  # fmt: skip
    recipe = resolve_recipe(None, {"compression": "lzf", "shard_size": 4, "cn2": 1e-13})
    generate(make_plan(tmp / "cs", recipe), tmp / "shards")
    return tmp / "shards"


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory) -> tuple[Path, list[tuple[int, int]]]:
    """A 3-step ERFNet run and the (step, total) calls its ``on_step`` received."""
    run = tmp_path_factory.mktemp("verbosity-run") / "run"
    config = resolve_config(
        shards, run, overrides={"small": True, "height": 32, "batch_size": 2, "workers": 0,
                                "device": "cpu", "max_steps": 3, "mode": "erfnet"},
    )  # fmt: skip
    calls: list[tuple[int, int]] = []
    train(config, log=lambda _: None, on_step=lambda step, total: calls.append((step, total)))
    return run, calls


def test_on_step_reports_every_step_from_the_start(trained):
    _, calls = trained
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_eval_progress_counts_the_images(trained, shards):
    run, _ = trained
    model, _ = load_model(run / "best.pt", "cpu")
    calls: list[tuple[int, int]] = []
    dataset = ShardDataset(shards, "val", height=32)
    result = evaluate(model, dataset, progress=lambda d, t: calls.append((d, t)), batch_size=1)
    assert calls == [(0, 2), (1, 2), (2, 2)]
    assert result.samples == 2


def _train_cli(shards: Path, run: Path, *extra: str):
    args = ["train", str(shards), "--out", str(run), "--mode", "erfnet", "--max-steps", "2",
            "--log-every", "1", *FAST, *extra]  # fmt: skip
    return CliRunner().invoke(fbseg, args)


def test_train_quiet_prints_only_the_result(shards, tmp_path):
    result = _train_cli(shards, tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.strip().startswith(f"{tmp_path / 'run'}: 2 steps")


def test_train_default_and_verbose_messages(shards, tmp_path):
    normal = _train_cli(shards, tmp_path / "a")
    assert normal.exit_code == 0, normal.output
    assert "training erfnet" in normal.stderr
    assert "step 2/2" in normal.stderr
    assert "config: {" not in normal.stderr
    verbose = _train_cli(shards, tmp_path / "b", "--verbose")
    assert verbose.exit_code == 0, verbose.output
    assert "config: {" in verbose.stderr and '"max_steps": 2' in verbose.stderr


@pytest.mark.parametrize("command", ["train", "eval", "study"])
def test_quiet_and_verbose_together_is_a_usage_error(command, shards, tmp_path):
    args = {
        "train": ["train", str(shards), "--out", str(tmp_path / "r")],
        "eval": ["eval", str(tmp_path / "x.pt"), str(shards)],
        "study": ["study", str(shards), "--out", str(tmp_path / "s")],
    }[command]
    result = CliRunner().invoke(fbseg, [*args, "-q", "-v"])
    assert result.exit_code == 2
    assert "--quiet and --verbose" in result.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


def test_eval_quiet_keeps_the_table_and_verbose_says_what(trained, shards):
    run, _ = trained
    quiet = CliRunner().invoke(fbseg, ["eval", str(run / "best.pt"), str(shards), "--height",
                                       "32", "--quiet"])  # fmt: skip
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""
    assert "mIoU" in quiet.stdout
    verbose = CliRunner().invoke(fbseg, ["eval", str(run / "best.pt"), str(shards), "--height",
                                         "32", "-v"])  # fmt: skip
    assert verbose.exit_code == 0, verbose.output
    assert "evaluating" in verbose.stderr and "(erfnet)" in verbose.stderr


# ------------------------------------------------------------------ correlation-table notice
@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    """An empty table cache and a cheap stand-in for the integration; the in-process cache is
    emptied before and after, so no other test sees a stand-in table."""
    monkeypatch.setenv("TURBSIM_CACHE_DIR", str(tmp_path / "cache"))

    def cheap(rho: float, wave: str = "spherical", quadrature: str = "matlab"):
        eta = np.array([0.01, 1.0, 10.0])
        return theory.CorrelationTable(rho, wave, quadrature, eta, 1.0 / (1 + eta), 1.0 / (1 + eta))

    monkeypatch.setattr(theory, "compute_correlation_table", cheap)
    theory._correlation_table_cached.cache_clear()
    yield 12.345
    theory._correlation_table_cached.cache_clear()


def test_first_integration_is_announced_once(fresh_cache, caplog):
    rho = fresh_cache
    with caplog.at_level(logging.INFO, logger="turbsim.physics.theory"):
        theory.correlation_table(rho)
        theory._correlation_table_cached.cache_clear()  # a new process: the disk cache answers
        theory.correlation_table(rho)
    notices = [r.getMessage() for r in caplog.records if r.name == "turbsim.physics.theory"]
    assert len(notices) == 1
    assert notices[0].startswith("integrating the correlation table for rho = 12.345")
    assert "once" in notices[0]


def test_notices_go_through_the_reporter(fresh_cache, monkeypatch, tmp_path, capsys):
    rho = fresh_cache
    show_library_notices()
    with Reporter(QUIET, "x", "y"):
        theory.correlation_table(rho)
    assert "integrating" not in capsys.readouterr().err  # --quiet drops it
    theory._correlation_table_cached.cache_clear()
    monkeypatch.setenv("TURBSIM_CACHE_DIR", str(tmp_path / "cache2"))
    theory.correlation_table(rho)
    assert "integrating the correlation table" in capsys.readouterr().err


def test_turbsim_group_installs_the_notice(fresh_cache):
    for name in ("turbsim", "feedbackseg"):
        logging.getLogger(name).handlers.clear()
    result = CliRunner().invoke(turbsim_main, ["params", "--path-height", "3.21"])
    assert result.exit_code == 0, result.output
    handlers = logging.getLogger("turbsim").handlers
    assert len(handlers) == 1 and logging.getLogger("turbsim").level == logging.INFO


# ---------------------------------------------------------------------- large-field warning
def test_field_scale_warning_threshold():
    sigma = theory.sigma_r_px(REFERENCE_PARAMS)  # 5.597 px
    width_at = sigma / LARGE_FIELD_FRACTION  # 559.7 px
    assert field_scale_warning([REFERENCE_PARAMS], (512, int(width_at) + 1)) is None
    message = field_scale_warning([REFERENCE_PARAMS], (256, int(width_at) - 1))
    assert message is not None
    assert "--focal-length" in message and "75000 px" in message
    assert field_scale_warning([REFERENCE_PARAMS], (1024, 2048)) is None
    assert field_scale_warning([], (16, 16)) is None


def test_field_scale_warning_suggestion_brings_sigma_under_the_limit():
    message = field_scale_warning([REFERENCE_PARAMS], (256, 512))
    suggested = float(message.split("<= ")[1].split(" px")[0])
    fixed = TurbulenceParams(**{**REFERENCE_PARAMS.__dict__, "focal_length_px": suggested})
    assert theory.sigma_r_px(fixed) <= LARGE_FIELD_FRACTION * 512 * (1 + 1e-3)
    assert theory.sigma_r_px(fixed) > 0.99 * LARGE_FIELD_FRACTION * 512


def test_field_scale_warning_judges_the_median_draw():
    small = TurbulenceParams(**{**REFERENCE_PARAMS.__dict__, "cn2": 1e-14})
    draws = [small, small, REFERENCE_PARAMS]
    assert field_scale_warning(draws, (256, 512)) is None
    assert field_scale_warning(list(np.repeat([REFERENCE_PARAMS], 2)) + [small], (256, 512))
