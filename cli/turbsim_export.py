"""``turbsim export``: generated shards as Cityscapes-layout PNGs or WebDataset tars.

The command parses its flags, calls :func:`turbsim.views.export.export_cityscapes` or
:func:`turbsim.views.export.export_webdataset` with a progress bar, and reports; library errors
become one line (exit 1), or name their flag (exit 2). Registered on ``turbsim`` in
cli/turbsim_cmd.py.
"""

from __future__ import annotations

from pathlib import Path

import click

from turbsim.views.export import FORMATS
from turbsim_cli.options import bad_parameter, one_line, os_error
from turbsim_cli.progress_bar import NORMAL, QUIET, Reporter

#: ExportError.key -> flag, for the errors that are flag mistakes (exit 2).
EXPORT_FLAG_ERRORS: dict[str, str] = {"variant": "--variant"}


@click.command("export", short_help="Write shards as Cityscapes-layout PNGs or WebDataset tars.")
@click.argument("shards_dir", metavar="SHARDS", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Export folder (new or empty; export.json is written last).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="cityscapes",
    show_default=True,
    help="cityscapes: leftImg8bit/ + gtFine/ PNG trees (mmsegmentation, detectron2); "
    "webdataset: one tar per shard.",
)
@click.option("--clean", is_flag=True, help="Also the clean images (leftImg8bit_clean/).")
@click.option(
    "--variant",
    type=click.IntRange(min=0),
    default=None,
    help="Only this variant (0-based), with plain {stem} names (default: all, {stem}_v{k} "
    "names when there are several).",
)
@click.option("--overwrite", is_flag=True, help="Replace an earlier export in --out.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def export(
    shards_dir: Path,
    out: Path,
    fmt: str,
    clean: bool,
    variant: int | None,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Write the generated dataset SHARDS under --out in the Cityscapes layout
    (leftImg8bit/{split}/{city}/{name}_leftImg8bit.png = the distorted image,
    gtFine/{split}/{city}/{name}_gtFine_labelTrainIds.png and _labelIds.png) or as WebDataset
    tars. The shards are verified first; every file is written atomically and export.json
    last, so an interrupted export never looks complete.
    """
    from turbsim.errors import TurbsimError
    from turbsim.views.export import export_cityscapes, export_webdataset

    run = export_cityscapes if fmt == "cityscapes" else export_webdataset
    reporter = Reporter(QUIET if quiet else NORMAL, desc="export", unit="img")
    try:
        with reporter:
            report = run(
                shards_dir,
                out,
                clean=clean,
                variant=variant,
                overwrite=overwrite,
                progress=reporter.progress,
            )
    except TurbsimError as error:  # the export's or the shards' (verified first)
        if error.key in EXPORT_FLAG_ERRORS:
            raise bad_parameter(error, EXPORT_FLAG_ERRORS) from None
        raise click.ClickException(one_line(error)) from None
    except OSError as error:
        raise os_error(error, out) from None
    except KeyboardInterrupt:
        click.echo(
            f"\ninterrupted: {out} is incomplete (no export.json); rerun with --overwrite",
            err=True,
        )
        raise click.Abort() from None
    counts = ", ".join(f"{split} {n}" for split, n in report.counts.items())
    click.echo(
        f"{out}: {sum(report.counts.values())} samples ({counts}), {report.files} files, "
        f"{report.seconds:.1f} s; wrote {out / 'export.json'}"
    )
