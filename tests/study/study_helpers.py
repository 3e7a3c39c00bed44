"""Helpers shared by this folder's tests (moved from test_study_runner.py, unchanged)."""

from __future__ import annotations

from click.testing import CliRunner

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


def _cli(*args: str):
    return CliRunner().invoke(main, [*map(str, args)])


def _one_line_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    return errors[0]


CONTRACT_TOP = {"cells", "harm", "resolution", "steps", "paper"}
