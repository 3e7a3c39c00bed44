"""Click options and parameter types shared by the ``turbsim`` and ``fbseg`` commands.

Importing this module is cheap: it reads the choice lists from the light
X (and with it numba and scipy) is
imported only when a command actually builds parameters, so ``--help`` stays fast.

Library errors carry the input at fault as ``error.key`` (a TurbulenceParams field, a recipe or
generate option); :func:`bad_parameter` maps it to its flag through a table, never by parsing
the message.
"""

from __future__ import annotations

import errno
import functools
import importlib.util
import os
import re
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from turbsim.physics.choices import WAVES
from turbsim.physics.params import REFERENCE_PARAMS

if TYPE_CHECKING:
    from turbsim.physics.params import TurbulenceParams

#: Name of the installed distribution (pyproject ``[project] name``).
DISTRIBUTION = "turbsim-feedbackseg"

#: Choices of ``--wave`` (the library's list).
WAVE_CHOICES: tuple[str, ...] = WAVES

#: Reference camera and atmosphere of the original code (SPEC section 1), from the library.
REFERENCE_CN2 = REFERENCE_PARAMS.cn2
REFERENCE_PATH_LENGTH_M = REFERENCE_PARAMS.path_length_m
REFERENCE_APERTURE_M = REFERENCE_PARAMS.aperture_m
REFERENCE_WAVELENGTH_M = REFERENCE_PARAMS.wavelength_m
REFERENCE_FOCAL_LENGTH_PX = REFERENCE_PARAMS.focal_length_px
REFERENCE_HEIGHT_M = REFERENCE_PARAMS.height_m

#: TurbulenceParams field -> (command-line flag, click parameter name).
PHYSICS_FLAGS: dict[str, tuple[str, str]] = {
    "cn2": ("--cn2", "cn2"),
    "path_length_m": ("--path-length", "path_length"),
    "aperture_m": ("--aperture", "aperture"),
    "wavelength_m": ("--wavelength", "wavelength"),
    "focal_length_px": ("--focal-length", "focal_length"),
    "height_m": ("--path-height", "path_height"),
    "wave": ("--wave", "wave"),
}


def recipe_default(key: str) -> str:
    """The default recipe's value of ``key`` (a top-level or physics key) as its flag takes it,
    for ``show_default`` in ``--help`` (e.g. ``"1e-12"``, ``"train,val"``)."""
    from turbsim.pipeline.recipe import DEFAULT_RECIPE

    value = DEFAULT_RECIPE["physics"].get(key, DEFAULT_RECIPE.get(key))
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def bad_parameter(error: Exception, flags: Mapping[str, str]) -> click.BadParameter:
    """A click usage error (exit code 2) for a library error that names its input.

    Args:
        error: a library exception; its ``key`` attribute (if any) names the input at fault.
        flags: library key -> command-line flag, e.g. ``{"shard_index": "--shard-index"}``.

    Returns:
        ``click.BadParameter(str(error))`` with the flag as ``param_hint`` (none when the key is
        missing or not in ``flags``).
    """
    flag = flags.get(getattr(error, "key", None) or "")
    return click.BadParameter(str(error), param_hint=f"'{flag}'" if flag else None)


def package_version() -> str:
    """Version of the installed distribution, or a marker when running from a bare checkout."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed; run pip install -e .)"


class OneLineErrorGroup(click.Group):
    """A click group whose usage errors print as one ``Error: ...`` line, without usage text.

    Click normally prints the usage and a "Try --help" hint above a usage error; user mistakes
    here are reported as a single line that names the flag, and exit with code 2 as before.
    """

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as error:
            error.ctx = None
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            error.ctx = None
            raise


def physics_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the turbulence-model flags (SPEC section 1), defaulting to the reference values.

    The decorated command receives ``cn2, path_length, aperture, wavelength, focal_length,
    path_height, wave``; pass them to :func:`params_from_options`.
    """
    options = [
        click.option(
            "--cn2",
            type=float,
            default=REFERENCE_CN2,
            show_default=True,
            help="Refractive-index structure constant Cn2 [m^-2/3], typically 1e-15 .. 1e-11.",
        ),
        click.option(
            "--path-length",
            type=float,
            default=REFERENCE_PATH_LENGTH_M,
            show_default=True,
            help="Camera-to-scene range L [m].",
        ),
        click.option(
            "--aperture",
            type=float,
            default=REFERENCE_APERTURE_M,
            show_default="0.3/5.6 = 0.05357",
            help="Aperture diameter D [m] (focal length / f-number).",
        ),
        click.option(
            "--wavelength",
            type=float,
            default=REFERENCE_WAVELENGTH_M,
            show_default=True,
            help="Wavelength lambda [m].",
        ),
        click.option(
            "--focal-length",
            type=float,
            default=REFERENCE_FOCAL_LENGTH_PX,
            show_default=True,
            help="Focal length f in pixels (focal length / pixel pitch) [px].",
        ),
        click.option(
            "--path-height",
            type=float,
            default=REFERENCE_HEIGHT_M,
            show_default=True,
            help="Height h of the path above ground [m]; outer scale L0 = 0.4 h.",
        ),
        click.option(
            "--wave",
            type=click.Choice(WAVE_CHOICES),
            default="spherical",
            show_default=True,
            help="Wave model: spherical (point sources) or plane.",
        ),
    ]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return command(*args, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def params_from_options(
    *,
    cn2: float,
    path_length: float,
    aperture: float,
    wavelength: float,
    focal_length: float,
    path_height: float,
    wave: str,
) -> TurbulenceParams:
    """Build :class:`turbsim.TurbulenceParams` from the physics flags.

    Raises:
        click.BadParameter: naming the offending flag, when the parameters are invalid.
    """
    from turbsim.physics.params import ParamsError, TurbulenceParams

    try:
        return TurbulenceParams(
            cn2=cn2,
            path_length_m=path_length,
            aperture_m=aperture,
            wavelength_m=wavelength,
            focal_length_px=focal_length,
            height_m=path_height,
            wave=wave,
        )
    except ParamsError as error:
        flags = {key: flag for key, (flag, _) in PHYSICS_FLAGS.items()}
        raise bad_parameter(error, flags) from None


class ImageSize(click.ParamType):
    """An image size written ``HxW`` (rows x columns, e.g. ``512x1024``), converted to (H, W)."""

    name = "HxW"
    _PATTERN = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        match = self._PATTERN.fullmatch(str(value))
        if match is None:
            self.fail(f"expected HxW (rows x columns), e.g. 512x1024, got {value!r}", param, ctx)
        height, width = int(match.group(1)), int(match.group(2))
        if height < 1 or width < 1:
            self.fail(f"height and width must be >= 1, got {value!r}", param, ctx)
        return height, width


IMAGE_SIZE = ImageSize()


#: What ``fbseg`` says when PyTorch is missing (turbsim alone needs no torch).
TORCH_MISSING = (
    "fbseg needs PyTorch (the 'torch' package), which is not installed: "
    "pip install 'turbsim-feedbackseg[train]'"
)


def require_torch() -> None:
    """Stop with one line and exit code 1 when torch cannot be imported (no traceback).

    Raises:
        click.ClickException: naming the missing package and the install command.
    """
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):  # ValueError: sys.modules["torch"] is None
        spec = None
    if spec is None:
        raise click.ClickException(TORCH_MISSING)


def user_errors(
    flags: Mapping[str, str] | None = None,
    on_os_error: Callable[[OSError, dict[str, Any]], click.ClickException] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a click command so that the libraries' user errors become one line.

    A :class:`turbsim.errors.TurbsimError` or :class:`feedbackseg.errors.FbsegError` is a usage
    error naming its flag (exit 2) when its ``key`` is in ``flags``, else one ``Error:`` line
    (exit 1); an OSError goes to ``on_os_error(error, the command's parameters)`` (none given:
    :func:`os_error`, naming the file at fault). Anything else propagates.

    Args:
        flags: library key -> command-line flag, e.g. ``{"split": "--split"}``.
        on_os_error: the command's message of an OS error (e.g. naming its output).
    """
    flags = dict(flags or {})

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            from turbsim.errors import TurbsimError

            bases: tuple[type[Exception], ...] = (TurbsimError,)
            if importlib.util.find_spec("feedbackseg") is not None:
                from feedbackseg.errors import FbsegError

                bases += (FbsegError,)
            try:
                return command(*args, **kwargs)
            except bases as error:
                if getattr(error, "key", None) in flags:
                    raise bad_parameter(error, flags) from None
                raise click.ClickException(one_line(error)) from None
            except OSError as error:
                if on_os_error is None:
                    raise os_error(error) from None
                raise on_os_error(error, kwargs) from None

        return run

    return decorate


def describe_defaults(command: click.Command, **texts: str) -> None:
    """Show in ``--help`` what an option left unset does (``[default: TEXT]``), for options
    whose default is None and means something (``all shards``, ``not written``)."""
    for param in command.params:
        if param.name in texts:
            param.show_default = texts.pop(param.name)
    if texts:
        raise ValueError(f"{command.name}: no options {sorted(texts)}")


def one_line(text: object) -> str:
    """``text`` on one line: runs of whitespace (newlines of HDF5's messages) become a space."""
    return " ".join(str(text).split())


def os_error(error: OSError, writing: str | os.PathLike | None = None) -> click.ClickException:
    """The one line of an OS error, for both commands (no traceback): ``FILE: cause``.

    FILE is the file the error names, a temporary of the atomic writer named by the file it was
    to become; when the error names none (a full disk's ``write``, HDF5's text), the output the
    command was writing. When FILE is a folder above that output (a file where a folder should
    be, say), the line says so: ``cannot write OUT: cause (FILE)``. A full disk or quota reads
    ``(disk full)`` however the OS or HDF5 says it (errno ENOSPC or EDQUOT, or HDF5's text with
    errno None).

    Args:
        error: the error.
        writing: the output the command was writing; None: name what the error names.
    """
    from turbsim._files import is_disk_full, temporary_target

    disk_full = is_disk_full(error) or error.errno == errno.EDQUOT
    if disk_full:
        cause = f"{error.strerror or os.strerror(errno.ENOSPC)} (disk full)"
    else:
        cause = one_line(error.strerror or error or type(error).__name__)
    where = temporary_target(error.filename) if error.filename is not None else None
    if where is None:
        where = writing if error.errno is not None or disk_full else None
    elif writing is not None and _above(Path(where), Path(writing)):
        return click.ClickException(f"cannot write {writing}: {cause} ({where})")
    return click.ClickException(cause if where is None else f"{where}: {cause}")


def _above(folder: Path, path: Path) -> bool:
    """Whether ``folder`` is a folder above ``path`` (compared as absolute paths)."""
    return Path(os.path.abspath(folder)) in Path(os.path.abspath(path)).parents


def positive_floats(text: str, flag: str) -> list[float]:
    """``"1e-13,1e-12"`` -> [1e-13, 1e-12]; click.BadParameter on ``flag`` otherwise."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
        if not values or any(not v > 0 for v in values):
            raise ValueError
    except ValueError:
        raise click.BadParameter(
            f"expected positive numbers like 1e-13,1e-12, got {text!r}", param_hint=f"'{flag}'"
        ) from None
    return values
