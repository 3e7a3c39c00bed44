"""One user-error base per package (turbsim.errors, feedbackseg.errors) and the CLI decorator
that turns them into one line (turbsim_cli.options.user_errors)."""

from __future__ import annotations

import errno
import importlib
import inspect
import pickle
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from turbsim.errors import TurbsimError
from turbsim_cli.options import user_errors

REPO = Path(__file__).resolve().parents[1]
#: Exceptions that are not a user's mistake (a numerical failure inside training).
NOT_USER_ERRORS = {"NonFiniteError"}


def _error_classes(package: str) -> dict[str, type]:
    """Every ``*Error`` class defined in a module of ``package`` (by its folder)."""
    found = {}
    for path in sorted((REPO / package).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        module = importlib.import_module(".".join(parts))
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, Exception)
                and name.endswith("Error")
                and value.__module__ == module.__name__
            ):
                found[name] = value
    return found


def test_every_turbsim_error_has_the_base() -> None:
    classes = _error_classes("turbsim")
    assert {"RecipeError", "GenerateError", "ShardError", "CityscapesError"} <= set(classes)
    bad = [
        n for n, c in classes.items() if c is not TurbsimError and not issubclass(c, TurbsimError)
    ]
    assert bad == [], bad


def test_every_feedbackseg_error_has_the_base() -> None:
    pytest.importorskip("torch")
    from feedbackseg.errors import FbsegError

    classes = _error_classes("feedbackseg")
    assert {"ConfigError", "DataError", "TrainError", "EvalError", "CheckpointError"} <= set(
        classes
    )
    bad = [
        n
        for n, c in classes.items()
        if c is not FbsegError and not issubclass(c, FbsegError) and n not in NOT_USER_ERRORS
    ]
    assert bad == [], bad


def test_errors_keep_their_standard_bases_and_pickle() -> None:
    from feedbackseg.errors import EvalError, TrainError
    from turbsim.pipeline.plan import GenerateError
    from turbsim.pipeline.recipe import RecipeError

    assert issubclass(RecipeError, ValueError) and issubclass(GenerateError, RuntimeError)
    assert issubclass(TrainError, RuntimeError) and issubclass(EvalError, ValueError)
    copy = pickle.loads(pickle.dumps(EvalError("bad height", "height")))
    assert (str(copy), copy.key) == ("bad height", "height")


@click.command()
@click.option("--kind", required=True)
@click.option("--out", default="out.txt")
@user_errors(
    {"size": "--size"},
    on_os_error=lambda error, params: click.ClickException(f"cannot write {params['out']}"),
)
def _command(kind: str, out: str) -> None:
    from turbsim.pipeline.recipe import RecipeError

    if kind == "flag":
        raise RecipeError("size must be HxW", "size")
    if kind == "file":
        raise RecipeError("mine.toml: not TOML\n(line 3)", "recipe")
    if kind == "os":
        raise OSError(errno.ENOSPC, "No space left on device")
    if kind == "other":
        raise KeyError("a bug")
    click.echo("ok")


@pytest.mark.parametrize(
    ("kind", "code", "line"),
    [
        ("flag", 2, "Error: Invalid value for '--size': size must be HxW"),
        ("file", 1, "Error: mine.toml: not TOML (line 3)"),
        ("os", 1, "Error: cannot write x.txt"),
    ],
)
def test_user_errors_decorator(kind: str, code: int, line: str) -> None:
    result = CliRunner().invoke(_command, ["--kind", kind, "--out", "x.txt"])
    assert result.exit_code == code, result.output
    assert result.output.strip().splitlines()[-1] == line  # (a usage error: after click's usage)
    assert "Traceback" not in result.output


def test_user_errors_lets_bugs_through() -> None:
    assert CliRunner().invoke(_command, ["--kind", "ok"]).output == "ok\n"
    result = CliRunner().invoke(_command, ["--kind", "other"])
    assert isinstance(result.exception, KeyError)  # a traceback: a bug, not a user error


def test_os_error_is_one_line_for_both_commands(tmp_path: Path) -> None:
    """turbsim_cli.options.os_error, the one formatter of both CLIs: the file at fault (a
    temporary named by its target), else the output; a folder above the output says 'cannot
    write'; a full disk or quota says '(disk full)' however it is reported."""
    from turbsim._files import temporary_name
    from turbsim_cli.options import os_error

    out = tmp_path / "run" / "last.pt"

    def line(error: OSError, writing: Path | None = out) -> str:
        return os_error(error, writing).format_message()

    denied = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "in.h5"))
    assert line(denied) == f"{tmp_path / 'in.h5'}: Permission denied"
    temporary = temporary_name(out)
    full = OSError(errno.ENOSPC, "No space left on device", str(temporary))
    assert line(full) == f"{out}: No space left on device (disk full)"
    assert line(OSError(errno.EDQUOT, "Disk quota exceeded")) == (
        f"{out}: Disk quota exceeded (disk full)"
    )
    hdf5 = OSError("Unable to write\n(file write failed: errno = 28, ...)")
    assert line(hdf5) == f"{out}: No space left on device (disk full)"
    above = FileExistsError(errno.EEXIST, "File exists", str(tmp_path / "run"))
    assert line(above) == f"cannot write {out}: File exists ({tmp_path / 'run'})"
    assert line(OSError("no errno, no file"), None) == "no errno, no file"
    assert line(OSError("no errno, no file")) == "no errno, no file"
