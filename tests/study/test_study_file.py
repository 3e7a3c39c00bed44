"""The study file of ``fbseg study`` (feedbackseg/study/study_file.py): the shipped studies, bad
files as one line, --only, the input key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from study_helpers import TINY, _cli, _one_line_error

from feedbackseg.config import ConfigError, TrainConfig, resolve_config
from feedbackseg.study.study_file import (
    StudyError,
    load_study,
    parse_only,
    parse_study,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


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
