"""The ``turbsim`` commands that inspect the physics without data: ``params``, ``field`` and
``plot-stats`` (registered on the group in :mod:`turbsim_cli.turbsim_cmd`).

Each parses its flags, calls the library (``turbsim.physics.quantities``, ``turbsim.views.folding``,
``turbsim.views.diagnostics``) and prints; numba and scipy are imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from turbsim.physics.choices import NORMALIZE_CHOICES
from turbsim_cli.options import (
    IMAGE_SIZE,
    PHYSICS_FLAGS,
    bad_parameter,
    describe_defaults,
    os_error,
    params_from_options,
    physics_options,
    positive_floats,
)


@click.command(short_help="Print inputs and derived quantities (sigma_r [px], rho, r0, ...).")
@physics_options
@click.option(
    "--recipe",
    default=None,
    help="A shipped recipe name or a TOML file: its physics and normalisation instead of the "
    "reference (physics flags given explicitly override it).",
)
@click.option(
    "--native-size",
    type=IMAGE_SIZE,
    default="1024x2048",
    show_default=True,
    help="Frame size HxW [px] of the camera, at which the fold fraction is measured.",
)
@click.option(
    "--size",
    type=IMAGE_SIZE,
    default=None,
    help="Stored size HxW [px] (default: the recipe's, if it sets one): also report the fold "
    "fraction of the displacement stored images show (the field area-averaged to it).",
)
@click.option(
    "--fold-fields",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="Monte Carlo fields for the fold fractions (0: do not measure them).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def params(
    as_json: bool,
    recipe: str | None,
    native_size: tuple[int, int],
    size: tuple[int, int] | None,
    fold_fields: int,
    **physics: Any,
) -> None:
    """Print the model inputs and derived quantities (sigma_r [px], f theta_D, rho, q, r0, ...).

    Use it to pick a turbulence strength knowingly: sigma_r_px is the standard deviation of the
    displacement along one axis, f_theta_d_px and rho set how it is correlated in space, and
    fold_fraction says where the distortion cannot be inverted (the map p + F(p) folds).
    With a recipe whose physics has ranges the table shows one draw (seed 0) and the fold
    fractions average over draws.
    """
    from turbsim.physics.quantities import describe, description_table, mean_psf_note
    from turbsim.views.folding import estimate_fold_fraction

    source, turbulence = _params_source(recipe, physics)
    if size is None and recipe is not None:
        size = source.size  # type: ignore[union-attr]
    description = describe(turbulence)
    if fold_fields:
        if size is not None and (size[0] > native_size[0] or size[1] > native_size[1]):
            raise click.BadParameter(
                f"stored size {size[0]}x{size[1]} is larger than the native size "
                f"{native_size[0]}x{native_size[1]}",
                param_hint="'--size'",
            )
        estimate = estimate_fold_fraction(source, native_size, size, fold_fields)
        description.update(estimate.to_dict())
    if as_json:
        click.echo(json.dumps(description, indent=2))
        return
    click.echo(description_table(description))
    note = mean_psf_note(description)
    if note:
        click.echo(note)


def _params_source(recipe: str | None, physics: dict[str, Any]) -> tuple[Any, Any]:
    """(fold-fraction source, TurbulenceParams of the table) from --recipe and the flags."""
    if recipe is None:
        turbulence = params_from_options(**physics)
        return turbulence, turbulence
    import numpy as np

    from turbsim.pipeline.recipe import RecipeError, resolve_recipe

    ctx = click.get_current_context()
    fields = {name: key for key, (_, name) in PHYSICS_FLAGS.items()}
    given = {
        fields[name]: value
        for name, value in physics.items()
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    }
    try:
        resolved = resolve_recipe(recipe, given)
    except RecipeError as error:
        flags = {key: flag for key, (flag, _) in PHYSICS_FLAGS.items()}
        raise bad_parameter(error, {**flags, "recipe": "--recipe"}) from None
    return resolved, resolved.sample_params(np.random.default_rng(0))


@click.command(short_help="Sample one tilt field to .npy (and optionally a PNG picture).")
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
    type=click.Choice(NORMALIZE_CHOICES),
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
        from turbsim.views.viz import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as error:
            raise click.ClickException(str(error)) from None

    import numpy as np

    from turbsim import sample_tilt_field
    from turbsim._files import atomic_path
    from turbsim.physics.theory import sigma_r_px

    tilt = sample_tilt_field(turbulence, size, np.random.default_rng(seed), normalize=normalize)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as temporary, open(temporary, "xb") as stream:
            np.save(stream, tilt)
    except OSError as error:
        raise os_error(error, out) from None
    click.echo(
        f"wrote {out}: float32 {tuple(tilt.shape)}, seed {seed}, "
        f"sigma_r {sigma_r_px(turbulence):.4g} px, sample std {float(tilt.std()):.4g} px"
    )
    if png is not None:
        from turbsim.views.viz import save_field_png

        try:
            png.parent.mkdir(parents=True, exist_ok=True)
            save_field_png(tilt, png)
        except OSError as error:
            raise os_error(error, png) from None
        click.echo(f"wrote {png}")


@click.command("plot-stats", short_help="Plot measured field statistics against the theory.")
@physics_options
@click.option(
    "--size", type=IMAGE_SIZE, default="256x256", show_default=True, help="Field size HxW [px]."
)
@click.option(
    "--fields",
    type=click.IntRange(min=2),
    default=200,
    show_default=True,
    help="Number of fields for the correlation curves.",
)
@click.option(
    "--cn2-values",
    default="1e-13,3e-13,1e-12,3e-12",
    show_default=True,
    help="Cn2 values [m^-2/3] of the variance line.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output PNG."
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the numbers as JSON.",
)
@click.option(
    "--shards",
    "shards_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also report the fold fractions of this shard folder's recipe at its native and "
    "stored sizes (from its manifest).",
)
def plot_stats(
    size: tuple[int, int],
    fields: int,
    cn2_values: str,
    seed: int,
    out: Path,
    json_out: Path | None,
    shards_dir: Path | None,
    **physics: Any,
) -> None:
    """Empirical longitudinal and lateral tilt correlations of generated fields against the
    closed-form theory, and the variance against Cn2, as a PNG (needs the viz extra); the fold
    fraction of the fields (and, with --shards, of a dataset's recipe)."""
    turbulence = params_from_options(**physics)
    values = positive_floats(cn2_values, "--cn2-values")
    from turbsim.views.viz import require_matplotlib

    try:
        require_matplotlib()
    except ImportError as error:
        raise click.ClickException(str(error)) from None
    import numpy as np

    from turbsim._files import write_json
    from turbsim.views.diagnostics import (
        blur_consistency,
        correlation_curves,
        stats_record,
        variance_vs_cn2,
    )
    from turbsim.views.folding import estimate_fold_fraction
    from turbsim.views.viz import plot_stats as draw

    rng = np.random.default_rng(seed)
    curves = correlation_curves(turbulence, size, fields, rng)
    line = variance_vs_cn2(turbulence, np.array(values), size, max(2, fields // 4), rng)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        draw(curves, line, out)
    except OSError as error:
        raise os_error(error, out) from None
    click.echo(f"wrote {out}")
    worst = curves.largest_deviation()
    click.echo(f"largest |measured - theory| of the correlation curves: {worst:.3f}")
    consistency = blur_consistency(turbulence)
    click.echo(consistency.table())
    fold = estimate_fold_fraction(turbulence, size, None, min(fields, 8), seed)
    click.echo(
        f"fold fraction of {size[0]}x{size[1]} fields (det J <= 0): {fold.native:.4f} "
        f"+- {fold.native_stderr:.4f}"
    )
    per_split = _shard_folds(shards_dir)
    if json_out is not None:
        record = stats_record(curves, line)
        record["fold"] = fold.to_dict()
        if per_split is not None:
            record["shards_fold"] = {split: e.to_dict() for split, e in per_split.items()}
        record["blur_consistency"] = {
            k: (v.tolist() if isinstance(v, np.ndarray) else v)
            for k, v in vars(consistency).items()
        }
        try:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            write_json(json_out, record, indent=2)
        except OSError as error:
            raise os_error(error, json_out) from None
        click.echo(f"wrote {json_out}")


def _shard_folds(shards_dir: Path | None) -> dict[str, Any] | None:
    """Print and return the fold fractions of a shard folder's recipe (None: no folder)."""
    if shards_dir is None:
        return None
    from turbsim.shards import ShardError
    from turbsim.views.folding import shard_fold_fractions

    try:
        per_split = shard_fold_fractions(shards_dir)
    except ShardError as error:
        raise click.ClickException(str(error)) from None
    for split, e in per_split.items():
        n, s = e.native_size, e.stored_size or e.native_size
        click.echo(
            f"{shards_dir} {split}: fold fraction {e.native:.4f} at native {n[0]}x{n[1]}, "
            f"{e.stored:.4f} stored at {s[0]}x{s[1]} ({e.fields} fields of its recipe)"
        )
    return per_split


describe_defaults(params, recipe="the reference camera and air (the flags' defaults)")
describe_defaults(field, png="not written")
describe_defaults(plot_stats, json_out="not written", shards_dir="none")
