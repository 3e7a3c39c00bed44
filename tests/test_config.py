"""feedbackseg.config: the bmvc2020 defaults against the paper, and errors in config-key words."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner

from feedbackseg.config import (
    MODES,
    RECIPES,
    ConfigError,
    TrainConfig,
    config_diff,
    resolve_config,
)
from turbsim_cli.fbseg_cmd import main

#: SPEC-feedbackseg section 4 (with the values sections 1-3 fix), written out here on purpose:
#: Rai et al., BMVC 2020, read off the original release. Not taken from config.py.
PAPER = {
    # S: Adam(lr 5e-4, betas (0.9, 0.999), eps 1e-8, weight decay 2e-4), lr x 0.99 every epoch
    "lr_s": 5e-4,
    "betas_s": (0.9, 0.999),
    "eps_s": 1e-8,
    "weight_decay_s": 2e-4,
    "lr_s_decay": 0.99,
    "lr_s_decay_epochs": 1,
    # R: Adam(lr 2e-4, betas (0.9, 0.999)) (torch's eps, no weight decay), lr x 0.5 / 30 epochs
    "lr_r": 2e-4,
    "betas_r": (0.9, 0.999),
    "eps_r": 1e-8,
    "weight_decay_r": 0.0,
    "lr_r_decay": 0.5,
    "lr_r_decay_epochs": 30,
    # 150 epochs, batch 8, height 224, no augmentation (sections 1 and 4)
    "epochs": 150,
    "batch_size": 8,
    "height": 224,
    "augment": False,
    # T = 3, gammas 0 / 0.1 / 0.2, alpha 1 (section 2.4); CB-iFL, beta 0.9999, weights from the
    # training shards' pixel counts, 19 classes with 255 ignored (section 3)
    "iterations": 3,
    "gamma_step": 0.1,
    "alpha": 1.0,
    "loss": "cb-ifl",
    "beta": 0.9999,
    "class_weights": "shards",
    "num_classes": 19,
}


def test_bmvc2020_is_the_defaults_and_the_defaults_are_the_papers() -> None:
    assert RECIPES["bmvc2020"] == {}
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for key, value in PAPER.items():
        assert defaults[key] == value, key
    resolved = resolve_config("s", "r", "bmvc2020")
    for key, value in PAPER.items():
        assert getattr(resolved, key) == value, key


def test_bmvc2020_original_changes_only_the_label_layout() -> None:
    assert RECIPES["bmvc2020-original"] == {"num_classes": 20, "class_weights": "bmvc2020"}
    a = resolve_config("s", "r", "bmvc2020").to_dict()
    b = resolve_config("s", "r", "bmvc2020-original").to_dict()
    differ = {k for k in a if a[k] != b[k]}
    assert differ == {"num_classes", "class_weights", "recipe"}


def test_modes_have_one_definition() -> None:
    from feedbackseg.models import MODES as MODEL_MODES

    assert MODEL_MODES == MODES == ("erfnet", "restore-seg", "feedback", "restore")


def test_config_errors_carry_the_key_and_speak_config_words() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_config("s", "r", overrides={"batch_size": 0})
    assert caught.value.key == "batch_size" and caught.value.keys == ("batch_size",)
    assert caught.value.reason == "must be an integer >= 1, got 0"
    assert "--" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        resolve_config("s", "r", overrides={"resume": True, "overwrite": True})
    assert caught.value.key is None and caught.value.keys == ("resume", "overwrite")
    assert (
        caught.value.describe(lambda k: f"--{k}") == "--resume and --overwrite exclude each other"
    )


def _train(*args: str):
    return CliRunner().invoke(main, ["train", "shards", "--out", "run", *args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--height", "36"],
            "Error: Invalid value for '--height': 36 is not a multiple of 16 (the feedback "
            "networks downsample by 16)",
        ),
        (
            ["--batch-size", "0"],
            "Error: Invalid value for '--batch-size': must be an integer >= 1, got 0",
        ),
        (["--resume", "--overwrite"], "Error: --resume and --overwrite exclude each other"),
        (
            ["--recipe", "paper"],
            "Error: Invalid value for '--recipe': unknown recipe 'paper' (expected one of "
            "bmvc2020, bmvc2020-original)",
        ),
    ],
)
def test_bad_flags_are_usage_errors_naming_the_flag(args: list[str], message: str) -> None:
    result = _train(*args)
    assert result.exit_code == 2, result.output
    assert result.output.strip() == message


def test_a_bad_config_file_value_names_the_key(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("height = 36\n")
    result = _train("--config", str(toml))
    assert result.exit_code == 1, result.output
    assert result.output.strip().startswith("Error: height: 36 is not a multiple of 16")


# ------------------------------------------ resolution and errors (moved from test_train.py)
def test_config_resolution_order(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("batch_size = 4\nlr-s = 1e-3\ncrop = [16, 32]\naugment = true\nseed = 3\n")
    c = resolve_config("s", tmp_path / "run", None, toml, {"seed": 7, "height": None})
    assert c.recipe == "bmvc2020" and c.epochs == 150 and c.height == 224  # recipe
    assert c.batch_size == 4 and c.lr_s == 1e-3 and c.crop == (16, 32)  # TOML over recipe
    assert c.seed == 7  # flags over TOML; None = not given
    assert c.lr_r == 2e-4 and c.lr_s_decay == 0.99 and c.lr_r_decay_epochs == 30
    assert c.weight_decay_s == 2e-4 and c.betas_s == (0.9, 0.999)
    assert Path(c.shards).is_absolute()
    back = TrainConfig.from_dict(json.loads(c.to_json()))
    assert back == c
    original = resolve_config("s", "r", "bmvc2020-original")
    assert original.num_classes == 20 and original.class_weights == "bmvc2020"
    assert RECIPES["bmvc2020"] == {}  # the defaults (tests/test_config.py checks them)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"height": 36}, "^height: 36 is not a multiple of 16"),
        ({"batch_size": 0}, "^batch_size: must be an integer >= 1, got 0$"),
        ({"mode": "unet"}, "^mode: unknown mode 'unet'"),
        ({"lr_s": -1.0}, "^lr_s: must be a finite number in (0, 1\\]"),
        ({"resume": True, "overwrite": True}, "^resume and overwrite exclude each other$"),
    ],
)
def test_config_rejects_bad_values(overrides: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        resolve_config("s", "r", overrides=overrides)


def test_config_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("learning_rate = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: unknown key 'learning_rate'"):
        resolve_config("s", "r", config_file=bad)
    with pytest.raises(ConfigError, match=r"missing\.toml: no such config file"):
        resolve_config("s", "r", config_file=tmp_path / "missing.toml")


def test_config_diff_ignores_resumable_keys() -> None:
    a = resolve_config("s", "r").to_dict()
    b = resolve_config("s", "r", overrides={"max_steps": 9, "workers": 0, "lr_s": 1e-3}).to_dict()
    assert config_diff(a, b) == ["lr_s: 0.0005 -> 0.001"]
