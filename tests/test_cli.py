"""The turbsim and fbseg command groups (cli/turbsim_cmd.py, cli/fbseg_cmd.py): help, version,
choice lists, image sizes. The physics commands: test_turbsim_physics.py; generate's flags:
test_turbsim_generate.py; the field pictures: test_viz.py."""

from __future__ import annotations

import re

from cli_output import run

import turbsim
from turbsim.shards import schema
from turbsim_cli import options
from turbsim_cli.fbseg_cmd import main as fbseg
from turbsim_cli.turbsim_cmd import main as turbsim_cli

TURBSIM_NOT_IMPLEMENTED: list[str] = []
FBSEG_COMMANDS = ["train", "eval", "predict", "compare", "plot", "import-checkpoint"]


# ------------------------------------------------------------------------------ turbsim
def test_help_lists_every_command() -> None:
    result = run(turbsim_cli, "--help")
    assert result.exit_code == 0
    for command in ["params", "field", *TURBSIM_NOT_IMPLEMENTED]:
        assert re.search(rf"^\s+{re.escape(command)}\s", result.output, re.MULTILINE), command
    # Placeholders say so in the listing rather than pretending to work.
    assert result.output.count("[not implemented yet]") == len(TURBSIM_NOT_IMPLEMENTED)


def test_version() -> None:
    result = run(turbsim_cli, "--version")
    assert result.exit_code == 0
    assert result.output.startswith("turbsim, version ")


def test_choice_lists_come_from_the_library() -> None:
    assert options.WAVE_CHOICES == schema.WAVES == turbsim.physics.params.WAVES
    generate = turbsim_cli.commands["generate"]
    choices = {p.name: tuple(p.type.choices) for p in generate.params if hasattr(p.type, "choices")}
    assert choices == {
        "wave": schema.WAVES,
        "normalize": schema.NORMALIZE_CHOICES,
        "border": schema.BORDERS,
        "compression": schema.COMPRESSIONS,
        "store_flow": schema.FLOW_CHOICES,
        "blur": schema.BLUR_MODES,
        "flow_resample": schema.FLOW_RESAMPLES,
    }
    field = turbsim_cli.commands["field"]
    normalize = next(p for p in field.params if p.name == "normalize")
    assert tuple(normalize.type.choices) == schema.NORMALIZE_CHOICES


def test_size_type_parses_rows_by_columns() -> None:
    assert options.IMAGE_SIZE.convert("512x1024", None, None) == (512, 1024)
    assert options.IMAGE_SIZE.convert(" 7 X 9 ", None, None) == (7, 9)


# -------------------------------------------------------------------------------- fbseg
def test_fbseg_help_and_version() -> None:
    result = run(fbseg, "--help")
    assert result.exit_code == 0
    for command in FBSEG_COMMANDS:
        assert re.search(rf"^\s+{re.escape(command)}\s", result.output, re.MULTILINE), command
    assert "not implemented" not in result.output
    assert run(fbseg, "--version").output.startswith("fbseg, version ")
