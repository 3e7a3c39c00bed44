"""``turbsim``: the turbulence-distortion simulator on the command line.

Each command parses its flags, builds the library's inputs, calls the library and prints the
result; tables, statistics and reports live in turbsim (``turbsim.physics.quantities.describe``,
``turbsim.views.diagnostics``, ``turbsim.shards``). turbsim's physics (numba, scipy) is imported
inside the commands; at import only the choice lists of ``turbsim.shards.schema`` are read, so
``turbsim --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from turbsim.shards.schema import (
    SPLITS,
)
from turbsim_cli import turbsim_physics as physics_commands
from turbsim_cli.options import (
    OneLineErrorGroup,
    describe_defaults,
    os_error,
    package_version,
    positive_floats,
    user_errors,
)
from turbsim_cli.progress_bar import show_library_notices


@click.group(name="turbsim", cls=OneLineErrorGroup)
@click.version_option(package_version(), prog_name="turbsim")
def main() -> None:
    """Physically faithful atmospheric-turbulence distortion (Schwartzman et al., ICCP 2017).

    Tilt fields are Gaussian random vector fields whose correlations follow from turbulence
    theory; images are warped with them. Start with `turbsim params` to see what a set of
    physics flags means in pixels.
    """
    show_library_notices()


for _command in (physics_commands.params, physics_commands.field, physics_commands.plot_stats):
    main.add_command(_command)


@main.command(short_help="PNG sheets: clean | distorted | field | labels, from shards.")
@click.argument("shards_dir", metavar="SHARDS", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the PNG sheets.",
)
@click.option("--split", default=None, help="Only this split (default: all, in recipe order).")
@click.option(
    "--count", type=click.IntRange(min=1), default=4, show_default=True, help="Number of samples."
)
@click.option(
    "--sweep-cn2",
    default=None,
    help="Also one sheet of one scene at these Cn2 "
    "values [m^-2/3], e.g. 1e-14,1e-13,3e-13,1e-12 (same random numbers).",
)
@click.option("--name", default=None, help="Sample (Cityscapes stem) for --sweep-cn2.")
@click.option("--raw", is_flag=True, help="Also write the plain distorted and clean images.")
@user_errors(
    {"split": "--split"}, on_os_error=lambda error, params: os_error(error, params["out_dir"])
)
def preview(
    shards_dir: Path,
    out_dir: Path,
    split: str | None,
    count: int,
    sweep_cn2: str | None,
    name: str | None,
    raw: bool,
) -> None:
    """Write PNG sheets (clean | distorted | displacement colour wheel + arrows | label colours)
    for a few samples of the generated dataset SHARDS, plus overview.png stacking them."""
    from turbsim.views.preview import preview as make_preview

    values = positive_floats(sweep_cn2, "--sweep-cn2") if sweep_cn2 else None
    written = make_preview(shards_dir, out_dir, split=split, count=count, raw=raw)
    if values:
        from turbsim.views.preview import cn2_sweep

        written.append(cn2_sweep(shards_dir, out_dir / "cn2_sweep.png", values, split, name))
    for path in written:
        click.echo(f"wrote {path}")


@main.command("sample-cityscapes", short_help="Write a synthetic Cityscapes-layout tree.")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="Images per split.")
@click.option(
    "--height", type=click.IntRange(min=16), default=1024, show_default=True, help="Height [px]."
)
@click.option(
    "--width", type=click.IntRange(min=16), default=2048, show_default=True, help="Width [px]."
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Root seed; each file depends only on (seed, split, index, size).",
)
@click.option(
    "--splits",
    default="train,val",
    show_default=True,
    help="Comma-separated splits among train, val, test (test: images only, no labels).",
)
@click.option("--overwrite", is_flag=True, help="Write into a non-empty OUT (same names replaced).")
@user_errors(on_os_error=lambda error, params: os_error(error, params["out"]))
def sample_cityscapes(
    out: Path, n: int, height: int, width: int, seed: int, splits: str, overwrite: bool
) -> None:
    """Write N procedural street scenes per split as a Cityscapes tree under OUT.

    OUT gets leftImg8bit/{split}/{city}/{city}_{seq:06d}_000019_leftImg8bit.png and, except for
    the test split, gtFine/.../..._gtFine_labelIds.png, readable like the real data set.
    """
    names = [name.strip() for name in splits.split(",") if name.strip()]
    if not names or any(x not in SPLITS for x in names) or len(set(names)) != len(names):
        message = f"expected distinct names among {', '.join(SPLITS)}, got {splits!r}"
        raise click.BadParameter(message, param_hint="'--splits'")
    from turbsim.sources.synthetic import write_sample_tree

    counts = write_sample_tree(out, n, height, width, seed, names, overwrite=overwrite)
    for split, count in counts.items():
        what = "images only, no public labels" if split == "test" else "images + gtFine labelIds"
        click.echo(f"wrote {count} {split} samples {height}x{width} ({what}) under {out}")


@main.command(short_help="Check generated shards against the manifest.")
@click.argument("out", metavar="SHARDS", type=click.Path(path_type=Path))
@user_errors()
def verify(out: Path) -> None:
    """Check the shards in SHARDS against SHARDS/manifest.json: size, SHA-256, completeness, sample
    counts, dataset shapes and dtypes; unlisted shards and leftover *.tmp files count too.

    Prints one line per problem and exits 1, or "OK: ..." and exits 0. On a network
    filesystem that rejects file locks, set HDF5_USE_FILE_LOCKING=FALSE.
    """
    from turbsim.shards import read_manifest
    from turbsim.shards import verify as verify_folder

    problems = verify_folder(out)
    entries = read_manifest(out)["shards"]
    if problems:
        for problem in problems:
            click.echo(problem)
        raise SystemExit(1)
    samples = sum(int(entry["samples"]) for entry in entries)
    click.echo(f"OK: {len(entries)} shards, {samples} samples verified")


@main.command(short_help="Summarise a shard folder.")
@click.argument("out", metavar="SHARDS", type=click.Path(path_type=Path))
@user_errors()
def info(out: Path) -> None:
    """Summarise the dataset in SHARDS: shards, samples, image size and bytes per split,
    compression, stored flow, parameter ranges, skipped inputs."""
    from turbsim.shards import summarize

    click.echo(summarize(out))


from turbsim_cli.turbsim_export import export  # noqa: E402  (commands of their own modules)
from turbsim_cli.turbsim_generate import generate  # noqa: E402

describe_defaults(preview, name="the first sample of the split")
main.add_command(generate)
main.add_command(export)


if __name__ == "__main__":
    main()
