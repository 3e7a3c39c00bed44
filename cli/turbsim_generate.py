"""``turbsim generate``: a Cityscapes tree or any image folder -> hot-weather HDF5 shards.

The command resolves the recipe from its flags, plans (turbsim.pipeline.plan,
turbsim.pipeline.image_folder), prints the plan (--dry-run, --verbose) or runs
turbsim.pipeline.generate.generate with a progress bar, and reports; library errors become one line
(exit 1), or name their flag (exit 2). Registered on
``turbsim`` in cli/turbsim_cmd.py.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import click

from turbsim.physics.choices import BLUR_MODES, BORDERS, NORMALIZE_CHOICES
from turbsim.pipeline.recipe import builtin_recipes
from turbsim.shards.schema import (
    COMPRESSIONS,
    FLOW_CHOICES,
    FLOW_RESAMPLES,
)
from turbsim_cli.options import (
    PHYSICS_FLAGS,
    WAVE_CHOICES,
    bad_parameter,
    describe_defaults,
    one_line,
    os_error,
    recipe_default,
)
from turbsim_cli.progress_bar import VERBOSE, verbosity, verbosity_options

#: ``turbsim generate``: GenerateError.key -> flag, for the errors that are flag mistakes (a bad
#: or contradictory shard selection, --resume with --overwrite); they exit 2 naming the flag.
GENERATE_FLAG_ERRORS: dict[str, str] = {
    "shard_index": "--shard-index",
    "num_shards": "--num-shards",
    "shards": "--shards",
    "resume": "--resume",
    "overwrite": "--overwrite",
    "label_map": "--label-map",
    "splits": "--splits",
    "size": "--size",
}

#: ``turbsim generate``: recipe key -> the flag that sets it; a RecipeError about a value given
#: on the command line (or about --recipe itself) exits 2 naming the flag.
RECIPE_FLAGS: dict[str, str] = {
    **{key: flag for key, (flag, _) in PHYSICS_FLAGS.items()},
    **{
        key: "--" + key.replace("_", "-")
        for key in ("splits", "size", "shard_size", "variants", "seed", "compression")
        + ("store_flow", "flow_resample", "blur", "normalize", "border", "recipe")
    },
}


@click.command(
    "generate", short_help="Turn Cityscapes (or any image folder) into distorted HDF5 shards."
)
@click.option(
    "--cityscapes",
    "cityscapes",
    type=click.Path(path_type=Path),
    envvar="CITYSCAPES_DATASET",
    default=None,
    help="Cityscapes root (leftImg8bit/, gtFine/); default $CITYSCAPES_DATASET. Or --images.",
)
@click.option(
    "--images",
    type=click.Path(path_type=Path),
    default=None,
    help="Instead of --cityscapes: any folder of PNG/JPEG images (searched recursively); "
    "DIR/{split}/ per split, or a flat folder for one split (--splits NAME).",
)
@click.option(
    "--labels",
    type=click.Path(path_type=Path),
    default=None,
    help="With --images: label PNGs laid out as the images (same relative path, .png); "
    "default none (labels all 255).",
)
@click.option(
    "--label-map",
    default=None,
    help="With --labels: what the label values are: trainids (0..18, 255; the default), "
    "cityscapes (labelIds) or a JSON file {value: trainId}.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder: manifest.json and {split}/shard-NNNNN.h5.",
)
@click.option(
    "--recipe",
    default=None,
    help="Recipe TOML file or shipped name (" + ", ".join(builtin_recipes()) + "); "
    "the flags below override it.",
    show_default="the default recipe, whose values the flags show",
)
@click.option(
    "--cn2",
    default=None,
    help="Cn2 [m^-2/3], or LO:HI sampled log-uniformly per image.",
    show_default=recipe_default("cn2"),
)
@click.option(
    "--path-length",
    default=None,
    help="Range L [m], or LO:HI (uniform).",
    show_default=recipe_default("path_length_m"),
)
@click.option(
    "--aperture",
    default=None,
    help="Aperture D [m], or LO:HI.",
    show_default=recipe_default("aperture_m"),
)
@click.option(
    "--wavelength",
    default=None,
    help="Wavelength [m], or LO:HI.",
    show_default=recipe_default("wavelength_m"),
)
@click.option(
    "--focal-length",
    default=None,
    help="Focal length [px], or LO:HI.",
    show_default=recipe_default("focal_length_px"),
)
@click.option(
    "--path-height",
    default=None,
    help="Path height h [m] (L0 = 0.4 h), or LO:HI.",
    show_default=recipe_default("height_m"),
)
@click.option(
    "--wave",
    type=click.Choice(WAVE_CHOICES),
    default=None,
    help="Wave model.",
    show_default=recipe_default("wave"),
)
@click.option(
    "--normalize",
    type=click.Choice(NORMALIZE_CHOICES),
    default=None,
    help="Field normalisation (ensemble physics, or per-field as the BMVC scripts).",
    show_default=recipe_default("normalize"),
)
@click.option(
    "--border",
    type=click.Choice(BORDERS),
    default=None,
    help="Warp border (zero = the Matlab interp2 behaviour).",
    show_default=recipe_default("border"),
)
@click.option(
    "--splits",
    default=None,
    help="Comma-separated splits, e.g. train,val.",
    show_default=recipe_default("splits"),
)
@click.option(
    "--size",
    default=None,
    help="Stored size HxW (distort at native size, then "
    "area-resize images, nearest-resize labels/flow), or 'native'.",
    show_default=recipe_default("size"),
)
@click.option(
    "--shard-size",
    type=int,
    default=None,
    help="Samples per shard.",
    show_default=recipe_default("shard_size"),
)
@click.option(
    "--variants",
    type=int,
    default=None,
    help="Distorted versions per image.",
    show_default=recipe_default("variants"),
)
@click.option(
    "--seed", type=int, default=None, help="Root seed.", show_default=recipe_default("seed")
)
@click.option(
    "--compression",
    type=click.Choice(COMPRESSIONS),
    default=None,
    help="HDF5 compression (gzip: readable everywhere; lzf: ~2x faster, h5py only).",
    show_default=recipe_default("compression"),
)
@click.option(
    "--store-flow",
    type=click.Choice(FLOW_CHOICES),
    default=None,
    is_flag=False,
    flag_value="int16",
    help="Also store the displacement field: int16 at 1/64 px (the bare flag) or float16.",
    show_default=recipe_default("store_flow"),
)
@click.option(
    "--flow-resample",
    type=click.Choice(FLOW_RESAMPLES),
    default=None,
    help="With --size: store the flow area-averaged (the displacement the stored image shows) "
    "or nearest-resampled (keeps the native roughness).",
    show_default=recipe_default("flow_resample"),
)
@click.option(
    "--blur",
    type=click.Choice(BLUR_MODES),
    default=None,
    help="After the tilt, the mean short-exposure blur of the same atmosphere "
    "(docs/physics.md); none: tilt only, as the BMVC data.",
    show_default=recipe_default("blur"),
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Local worker processes (or Dask workers with --scheduler local-cluster).",
)
@click.option("--resume", is_flag=True, help="Keep shards already published and valid.")
@click.option("--overwrite", is_flag=True, help="Replace a dataset already in --out.")
@click.option(
    "--skip-bad",
    is_flag=True,
    help="Skip unreadable inputs, listing them in the manifest, instead of stopping.",
)
@click.option(
    "--shard-index",
    type=int,
    default=None,
    help="With --num-shards: render the "
    "shards whose number modulo N is I (SLURM arrays: $SLURM_ARRAY_TASK_ID).",
)
@click.option("--num-shards", type=int, default=None, help="See --shard-index.")
@click.option(
    "--shards", "shard_list", default=None, help="Render only these shard numbers, e.g. 3,7-9."
)
@click.option(
    "--scheduler",
    default=None,
    help="Dask scheduler address, or 'local-cluster' (needs the dask extra).",
)
@click.option("--dry-run", is_flag=True, help="Print the resolved recipe and the plan; exit.")
@verbosity_options
def generate(
    cityscapes: Path | None,
    images: Path | None,
    labels: Path | None,
    label_map: str | None,
    out: Path,
    recipe: str | None,
    workers: int,
    resume: bool,
    overwrite: bool,
    skip_bad: bool,
    shard_index: int | None,
    num_shards: int | None,
    shard_list: str | None,
    scheduler: str | None,
    dry_run: bool,
    quiet: bool,
    verbose: bool,
    **overrides: Any,
) -> None:
    """Generate a hot-weather version of a Cityscapes folder (or of any folder of images,
    --images) as HDF5 shards with a manifest.

    Values come from the default recipe, then --recipe, then these flags. Every sample's
    randomness depends only on (seed, split, image stem, variant): the output is bit-identical
    for any --workers, shard selection or --resume.
    """
    from turbsim.errors import TurbsimError
    from turbsim.pipeline.plan import describe_plan, select_tasks
    from turbsim.pipeline.recipe import RecipeError, recipe_to_toml, resolve_recipe

    level = verbosity(quiet, verbose)
    make_input_plan = _input_planner(cityscapes, images, labels, label_map)
    fields = {name: key for key, (_, name) in PHYSICS_FLAGS.items()}
    resolved = {fields.get(k, k): v for k, v in overrides.items()}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plan = make_input_plan(resolve_recipe(recipe, resolved), skip_bad)
        for message in dict.fromkeys(str(warning.message) for warning in caught):
            click.echo(f"warning: {message}", err=True)
        if dry_run:
            selected = select_tasks(plan.tasks, shard_index, num_shards, shard_list)
            click.echo(recipe_to_toml(plan.recipe))
            click.echo(f"# recipe hash {plan.recipe.digest()}")
            click.echo(describe_plan(plan, selected))
            return
        if level == VERBOSE:
            selected = select_tasks(plan.tasks, shard_index, num_shards, shard_list)
            click.echo(recipe_to_toml(plan.recipe).rstrip(), err=True)
            click.echo(f"# recipe hash {plan.recipe.digest()}", err=True)
            click.echo(describe_plan(plan, selected), err=True)
        report = _run_with_progress(
            plan,
            out,
            quiet,
            workers=workers,
            resume=resume,
            overwrite=overwrite,
            skip_bad=skip_bad,
            shard_index=shard_index,
            num_shards=num_shards,
            shard_list=shard_list,
            scheduler=scheduler,
        )
    except RecipeError as error:  # a flag's value, or a recipe file's (named in the message)
        given = {key for key, value in resolved.items() if value is not None}
        if error.key == "recipe" or error.key in given:
            raise bad_parameter(error, RECIPE_FLAGS) from None
        raise click.ClickException(one_line(error)) from None
    except TurbsimError as error:
        if error.key in GENERATE_FLAG_ERRORS:
            raise bad_parameter(error, GENERATE_FLAG_ERRORS) from None
        raise click.ClickException(one_line(error)) from None
    except OSError as error:
        raise os_error(error, out) from None
    except MemoryError as error:
        raise click.ClickException(
            f"out of memory while generating into {out} ({one_line(error) or 'MemoryError'}); "
            "run fewer worker processes (--workers 1) or free memory, then rerun with --resume "
            "(the shards published so far are kept)"
        ) from None
    rate = report.samples / report.seconds if report.seconds > 0 else 0.0
    click.echo(
        f"{out}: {report.rendered_shards} shard(s) rendered, {report.reused_shards} reused, "
        f"{report.planned_shards} planned; {report.seconds:.1f} s"
        + (f" ({rate:.2f} samples/s overall)" if report.rendered_shards else "")
    )
    if report.manifest_written:
        click.echo(f"wrote {out / 'manifest.json'}")
    else:
        click.echo(
            f"{len(report.missing_shards)} planned shard(s) not present yet; the manifest is "
            "written by the run that completes the set (e.g. rerun with --resume)"
        )


def _input_planner(
    cityscapes: Path | None, images: Path | None, labels: Path | None, label_map: str | None
) -> Any:
    """``(recipe, skip_bad) -> Plan`` for the input the flags name: a Cityscapes tree or an
    image folder. Exactly one of --cityscapes (or $CITYSCAPES_DATASET) and --images; --labels
    and --label-map only with --images, --label-map only with --labels (usage errors, exit 2)."""
    from click.core import ParameterSource

    from turbsim.pipeline.image_folder import make_folder_plan
    from turbsim.pipeline.plan import make_plan

    ctx = click.get_current_context()
    if images is not None and ctx.get_parameter_source("cityscapes") == ParameterSource.ENVIRONMENT:
        cityscapes = None  # --images wins over $CITYSCAPES_DATASET
    if images is not None and cityscapes is not None:
        raise click.UsageError("--cityscapes and --images exclude each other; give one of them")
    if images is None and cityscapes is None:
        raise click.UsageError(
            "Missing option '--cityscapes' or '--images' (or set $CITYSCAPES_DATASET)"
        )
    if images is None and (labels is not None or label_map is not None):
        flag = "--labels" if labels is not None else "--label-map"
        raise click.UsageError(f"{flag} goes with --images (a Cityscapes tree has its own labels)")
    if labels is None and label_map is not None:
        raise click.UsageError("--label-map needs --labels (without labels every label is 255)")
    if images is None:
        return lambda recipe, skip_bad: make_plan(cityscapes, recipe, skip_bad=skip_bad)
    return lambda recipe, skip_bad: make_folder_plan(
        images, recipe, labels=labels, label_map=label_map, skip_bad=skip_bad
    )


def _run_with_progress(plan: Any, out: Path, quiet: bool, **options: Any) -> Any:
    """turbsim.pipeline.generate.generate(plan, out, **options) with a tqdm bar (none when
    ``quiet``) and its log lines on stderr; returns its RunReport."""
    from turbsim.pipeline.generate import generate as run_generate

    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(total=0, unit="img", dynamic_ncols=True, desc="generate")

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    try:
        return run_generate(
            plan,
            out,
            progress=progress,
            log=lambda msg: click.echo(msg, err=True),  # what resume keeps or redoes: always
            **options,
        )
    except KeyboardInterrupt:  # Ctrl-C: the workers are gone already (turbsim.pipeline.executors)
        # llvmlite objects a Numba compile left half-built fail in __del__: print no traceback
        sys.unraisablehook = lambda unraisable: None
        if bar is not None:
            bar.close()
            bar = None
        click.echo(
            f"\ninterrupted: the shards published in {out} are kept; "
            "rerun with --resume to continue",
            err=True,
        )
        raise click.Abort() from None
    finally:
        if bar is not None:
            bar.close()


describe_defaults(
    generate,
    images="--cityscapes",
    shard_index="all shards",
    num_shards="all shards",
    shard_list="all shards",
    scheduler="local processes (--workers)",
)
