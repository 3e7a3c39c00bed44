"""``turbsim``: the turbulence-distortion simulator on the command line.

turbsim and numba are imported inside the commands, so ``turbsim --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import click

from cli.options import (
    IMAGE_SIZE,
    OneLineErrorGroup,
    not_implemented_command,
    package_version,
    params_from_options,
    physics_options,
)

#: Unit and meaning of each key of ``TurbulenceParams.summary()``, for the ``params`` table.
_SUMMARY_ROWS: dict[str, tuple[str, str]] = {
    "cn2": ("m^-2/3", "refractive-index structure constant Cn2"),
    "path_length_m": ("m", "camera-to-scene range L"),
    "aperture_m": ("m", "aperture diameter D"),
    "wavelength_m": ("m", "wavelength lambda"),
    "focal_length_px": ("px", "focal length f"),
    "height_m": ("m", "height h of the path above ground"),
    "wave": ("", "wave model"),
    "theta_d_rad": ("rad", "theta_D = D / L"),
    "f_theta_d_px": ("px", "f theta_D: pixels per unit of eta"),
    "outer_scale_m": ("m", "outer scale L0 = 0.4 h"),
    "rho": ("1", "rho = L0 / D: shape of the correlation"),
    "q": ("1", "q = D / sqrt(lambda L)"),
    "variance_coefficient": ("1", "c(q) in sigma_A^2 = c Cn2 L D^-1/3"),
    "sigma_a_rad": ("rad", "std of the angle of arrival, one axis"),
    "sigma_r_px": ("px", "std of the displacement, one axis"),
    "r0_m": ("m", "Fried parameter r0"),
    "d_over_r0": ("1", "D / r0"),
}
_INPUT_KEYS = (
    "cn2",
    "path_length_m",
    "aperture_m",
    "wavelength_m",
    "focal_length_px",
    "height_m",
    "wave",
)


def _format_value(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _summary_table(summary: dict[str, Any]) -> str:
    """Aligned text table of a ``TurbulenceParams.summary()``: inputs, then derived quantities."""
    sections = {
        "inputs": [k for k in summary if k in _INPUT_KEYS],
        "derived": [k for k in summary if k not in _INPUT_KEYS],
    }
    rows = {
        key: (key, _format_value(summary[key]), *_SUMMARY_ROWS.get(key, ("", "")))
        for key in summary
    }
    widths = [max(len(row[i]) for row in rows.values()) for i in range(3)]
    lines = []
    for title, keys in sections.items():
        lines.append(f"{title}:")
        for key in keys:
            name, value, unit, meaning = rows[key]
            line = f"  {name:<{widths[0]}}  {value:>{widths[1]}}  {unit:<{widths[2]}}  {meaning}"
            lines.append(line.rstrip())
    return "\n".join(lines)


def _save_npy_atomic(array: Any, path: Path) -> None:
    """np.save to a temporary file in the same folder, then rename over ``path``."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as stream:
            np.save(stream, array)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_error(path: Path, error: OSError) -> click.ClickException:
    where = f" ({error.filename})" if error.filename and str(error.filename) != str(path) else ""
    return click.ClickException(f"cannot write {path}: {error.strerror or error}{where}")


@click.group(name="turbsim", cls=OneLineErrorGroup)
@click.version_option(package_version(), prog_name="turbsim")
def main() -> None:
    """Physically faithful atmospheric-turbulence distortion (Schwartzman et al., ICCP 2017).

    Tilt fields are Gaussian random vector fields whose correlations follow from turbulence
    theory; images are warped with them. Start with `turbsim params` to see what a set of
    physics flags means in pixels.
    """


@main.command(short_help="Print inputs and derived quantities (sigma_r [px], rho, r0, ...).")
@physics_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def params(as_json: bool, **physics: Any) -> None:
    """Print the model inputs and derived quantities (sigma_r [px], f theta_D, rho, q, r0, ...).

    Use it to pick a turbulence strength knowingly: sigma_r_px is the standard deviation of the
    displacement along one axis, f_theta_d_px and rho set how it is correlated in space.
    """
    summary = params_from_options(**physics).summary()
    click.echo(json.dumps(summary, indent=2) if as_json else _summary_table(summary))


@main.command(short_help="Sample one tilt field to .npy (and optionally a PNG picture).")
@physics_options
@click.option("--size", type=IMAGE_SIZE, required=True, help="Field size HxW [px], e.g. 512x1024.")
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of numpy.random.default_rng.",
)
@click.option(
    "--normalize",
    type=click.Choice(["ensemble", "per-field"]),
    default="ensemble",
    show_default=True,
    help="ensemble: unit ensemble variance x sigma_r (the Matlab code); per-field: each "
    "component of the field rescaled to sample std sigma_r (the BMVC scripts).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output .npy file: float32 (2, H, W), [0] row, [1] column displacement [px].",
)
@click.option(
    "--png",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a colour-wheel picture of the field (needs matplotlib).",
)
def field(
    size: tuple[int, int], seed: int, normalize: str, out: Path, png: Path | None, **physics: Any
) -> None:
    """Sample one tilt field and save it as .npy (optionally also as a PNG picture).

    Convention: out(r, c) = img(r + F_row, c + F_col), so content moves by -F.
    """
    turbulence = params_from_options(**physics)
    if png is not None:
        from turbsim.viz import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as error:
            raise click.ClickException(str(error)) from None

    import numpy as np

    from turbsim import sample_tilt_field

    tilt = sample_tilt_field(turbulence, size, np.random.default_rng(seed), normalize=normalize)
    try:
        _save_npy_atomic(tilt, out)
    except OSError as error:
        raise _write_error(out, error) from None
    click.echo(
        f"wrote {out}: float32 {tuple(tilt.shape)}, seed {seed}, "
        f"sigma_r {turbulence.sigma_r_px:.4g} px, sample std {float(tilt.std()):.4g} px"
    )
    if png is not None:
        from turbsim.viz import save_field_png

        try:
            png.parent.mkdir(parents=True, exist_ok=True)
            save_field_png(tilt, png)
        except OSError as error:
            raise _write_error(png, error) from None
        click.echo(f"wrote {png}")


for _name, _summary in (
    ("generate", "Generate a distorted data set from a recipe into HDF5 shards."),
    ("sample-cityscapes", "Distort a few Cityscapes images for a quick look."),
    ("verify", "Check generated shards against the manifest and the theory."),
    ("info", "Describe a shard folder or a recipe."),
    ("preview", "Render clean/distorted/field previews from shards."),
    ("plot-stats", "Plot measured field statistics against the closed-form theory."),
):
    not_implemented_command(main, _name, _summary)


if __name__ == "__main__":
    main()
