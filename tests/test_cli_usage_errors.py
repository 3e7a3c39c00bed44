"""Every command's usage errors: exit code 2 and an error line that names the flag at fault,
whether click or the library finds the value bad (cli/options.py bad_parameter)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from feedbackseg.config import resolve_config
from feedbackseg.training.train import train
from turbsim.pipeline.generate import generate
from turbsim.pipeline.plan import make_plan
from turbsim.pipeline.recipe import resolve_recipe
from turbsim.sources.synthetic import write_sample_tree
from turbsim_cli.fbseg_cmd import main as fbseg
from turbsim_cli.turbsim_cmd import main as turbsim

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    """shards/ (train 2, val 2 at 32 x 64), run/best.pt (1 ERFNet step), image.png."""
    tmp = tmp_path_factory.mktemp("usage")
    write_sample_tree(tmp / "cs", n=2, height=32, width=64, seed=0)
    recipe = resolve_recipe(None, {"compression": "lzf", "cn2": 1e-13})
    generate(make_plan(tmp / "cs", recipe), tmp / "shards")
    config = resolve_config(
        tmp / "shards", tmp / "run", overrides={"small": True, "height": 32, "batch_size": 2,
                                                "workers": 0, "device": "cpu", "max_steps": 1,
                                                "mode": "erfnet"},
    )  # fmt: skip
    train(config, log=lambda _: None)
    cv2.imwrite(str(tmp / "image.png"), np.zeros((32, 64, 3), np.uint8))
    return tmp


#: (CLI, arguments with {t} for the fixture folder and {o} for the test's empty output folder,
#: the flag the error must name).
CASES = [
    ("turbsim", "params --cn2 -1", "--cn2"),
    ("turbsim", "params --wave bogus", "--wave"),
    ("turbsim", "field --size 0x0 --out {o}/f.png", "--size"),
    ("turbsim", "plot-stats --cn2 abc --out {o}/p.png", "--cn2"),
    ("turbsim", "preview {t}/shards --out {o}/pv --count 0", "--count"),
    ("turbsim", "preview {t}/shards --out {o}/pv --sweep-cn2 abc", "--sweep-cn2"),
    ("turbsim", "preview {t}/shards --out {o}/pv --split nosuch", "--split"),
    ("turbsim", "sample-cityscapes {o}/s --n 0", "--n"),
    ("turbsim", "generate --cityscapes {t}/cs --out {o}/g --cn2 -1", "--cn2"),
    ("turbsim", "generate --cityscapes {t}/cs --out {o}/g --path-length 5:1", "--path-length"),
    ("turbsim", "generate --cityscapes {t}/cs --out {o}/g --shard-size 0", "--shard-size"),
    ("turbsim", "generate --cityscapes {t}/cs --out {o}/g --variants 0", "--variants"),
    ("turbsim", "generate --cityscapes {t}/cs --out {o}/g --size 8x8", "--size"),
    ("turbsim", "generate --cityscapes {t}/cs --out {o}/g --splits train,train", "--splits"),
    ("turbsim", "generate --cityscapes {t}/cs --out {o}/g --recipe nosuch", "--recipe"),
    ("turbsim", "generate --cityscapes {t}/cs --out {o}/g --shard-index 3", "--num-shards"),
    ("turbsim", "generate --cityscapes {t}/cs --out {o}/g --seed -1", "--seed"),
    ("turbsim", "generate --cityscapes {t}/cs --out {o}/g -q -v", "--verbose"),
    ("turbsim", "generate --images {t}/cs --cityscapes {t}/cs --out {o}/g", "--images"),
    ("turbsim", "generate --images {t}/cs/leftImg8bit/train --out {o}/g", "--splits"),
    ("turbsim", "verify", "SHARDS"),
    ("turbsim", "info", "SHARDS"),
    ("fbseg", "import-checkpoint {o}/a.pth", "OUT"),
    ("turbsim", "export {t}/shards --out {o}/e --format bogus", "--format"),
    ("turbsim", "export {t}/shards --out {o}/e --variant 5", "--variant"),
    ("fbseg", "train {t}/shards --out {o}/r --batch-size 0", "--batch-size"),
    ("fbseg", "train {t}/shards --out {o}/r --lr-s -1", "--lr-s"),
    ("fbseg", "train {t}/shards --out {o}/r --height 17", "--height"),
    ("fbseg", "train {t}/shards --out {o}/r --mode bogus", "--mode"),
    ("fbseg", "eval {t}/run/best.pt {t}/shards --height 17", "--height"),
    ("fbseg", "eval {t}/run/best.pt {t}/shards --split nosuch", "--split"),
    ("fbseg", "eval {t}/run/best.pt {t}/shards --batch-size 0", "--batch-size"),
    ("fbseg", "study {t}/shards --out {o}/s --seeds x", "--seeds"),
    ("fbseg", "study {t}/shards --out {o}/s --only nosuch", "--only"),
    ("fbseg", "predict {t}/run/best.pt {t}/image.png --out {o}/p --height 17", "--height"),
    ("fbseg", "predict {t}/run/best.pt {t}/image.png --out {o}/p --format bogus", "--format"),
    ("fbseg", "compare {t}/run --markdown", "--markdown"),
    ("fbseg", "plot {t}/run", "--out"),
]


@pytest.mark.parametrize(("cli", "args", "flag"), CASES, ids=[f"{c} {a}" for c, a, _ in CASES])
def test_usage_error_exits_2_naming_the_flag(place, tmp_path, cli, args, flag):
    command = {"turbsim": turbsim, "fbseg": fbseg}[cli]
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(command, args.format(t=place, o=out).split())
    assert result.exit_code == 2, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error:") and flag in last, result.stderr
    assert "Traceback" not in result.output
    assert list(out.iterdir()) == [], "a refused command wrote its output"


def test_a_bad_value_in_a_recipe_file_names_the_file_and_exits_1(place, tmp_path) -> None:
    recipe = tmp_path / "mine.toml"
    recipe.write_text("[physics]\ncn2 = -1.0\n")
    args = ["generate", "--cityscapes", place / "cs", "--out", tmp_path / "g", "--recipe", recipe]
    result = CliRunner().invoke(turbsim, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: {recipe}: cn2 must be"), last


def test_generate_help_shows_the_recipe_defaults_and_every_recipe() -> None:
    from turbsim.pipeline.recipe import DEFAULT_RECIPE, builtin_recipes

    text = "".join(CliRunner().invoke(turbsim, ["generate", "--help"]).output.split())
    assert f"[default:({DEFAULT_RECIPE['physics']['cn2']:g})]" in text
    assert "[default:(train,val)]" in text and "[default:(native)]" in text
    assert len(builtin_recipes()) >= 9
    for name in builtin_recipes():
        assert name in text, name


def test_generate_verbose_prints_the_resolved_recipe(place, tmp_path) -> None:
    args = ["generate", "--cityscapes", str(place / "cs"), "--out", str(tmp_path / "g"),
            "--splits", "val", "--compression", "lzf", "-v"]  # fmt: skip
    result = CliRunner().invoke(turbsim, args)
    assert result.exit_code == 0, result.output
    assert "# recipe hash" in result.stderr and "[physics]" in result.stderr
    quiet = CliRunner().invoke(turbsim, [*args[:-1], "-q", "--overwrite"])
    assert quiet.exit_code == 0, quiet.output
    assert all(x.startswith("warning:") for x in quiet.stderr.splitlines()), quiet.stderr


def test_large_field_warns_once_naming_the_camera_flag(place, tmp_path) -> None:
    """32 x 64 px frames under the default camera: sigma_r = 5.6 px is 9 % of the width."""
    base = ["generate", "--cityscapes", str(place / "cs"), "--out", str(tmp_path / "g"),
            "--dry-run"]  # fmt: skip
    warned = CliRunner().invoke(turbsim, base)
    lines = [x for x in warned.stderr.splitlines() if x.startswith("warning:")]
    assert len(lines) == 1 and "--focal-length" in lines[0] and "32x64 px" in lines[0], lines
    scaled = CliRunner().invoke(turbsim, [*base, "--focal-length", "2000"])
    assert scaled.exit_code == 0 and "warning:" not in scaled.stderr, scaled.stderr


@pytest.mark.parametrize("cli", ["turbsim", "fbseg"])
def test_every_option_says_its_default(cli) -> None:
    """An option a user may leave out says in --help what it then is (flags aside)."""
    import click

    group = {"turbsim": turbsim, "fbseg": fbseg}[cli]
    silent = []
    for name, command in group.commands.items():
        for param in command.params:
            if not isinstance(param, click.Option) or param.is_flag or param.required:
                continue
            text = (param.help or "").lower()
            if param.show_default in (None, False) and "default" not in text and "[" not in text:
                silent.append(f"{name} {param.opts[0]}")
    assert silent == []
