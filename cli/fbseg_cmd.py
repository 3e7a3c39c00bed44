"""``fbseg``: spatial-feedback restoration + segmentation models on the command line.

torch is never imported at module level here, so ``fbseg --help`` stays fast.
"""

from __future__ import annotations

import click

from cli.options import OneLineErrorGroup, not_implemented_command, package_version


@click.group(name="fbseg", cls=OneLineErrorGroup)
@click.version_option(package_version(), prog_name="fbseg")
def main() -> None:
    """Train and evaluate segmentation models on turbulence-distorted images (turbsim shards)."""


# Commands of later issues; each line is replaced by the real command when it lands.
not_implemented_command(main, "train", "Train a model on turbsim shards.")
not_implemented_command(main, "eval", "Evaluate a checkpoint (mIoU per class) on a shard split.")
not_implemented_command(main, "predict", "Restore and segment images with a checkpoint.")


@main.command("import-checkpoint")
@click.argument("source", metavar="IN", type=click.Path(dir_okay=False))
@click.argument("dest", metavar="OUT", type=click.Path(dir_okay=False))
def import_checkpoint(source: str, dest: str) -> None:
    """Convert a checkpoint of the original code (IN) to this package's format (OUT).

    IN: erfnet_pretrained.pth, the BMVC 2020 model_best.pth or rmodel_best.pth, or
    erfnet_encoder_pretrained.pth.tar. The network is detected from the keys.
    """
    import warnings

    from feedbackseg.checkpoints import CheckpointError, import_original_info, save_imported

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            info = import_original_info(source)
        save_imported(info, dest)
    except CheckpointError as error:
        raise click.ClickException(str(error)) from None
    for note in info.notes:
        click.echo(f"note: {note}", err=True)
    classes = "" if info.num_classes is None else f", {info.num_classes} classes"
    click.echo(f"{source}: {info.kind}{classes}; wrote {dest}")


not_implemented_command(main, "compare", "Compare evaluation results of several runs.")


if __name__ == "__main__":
    main()
