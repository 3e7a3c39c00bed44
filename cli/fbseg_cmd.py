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


for _name, _summary in (
    ("train", "Train a model on turbsim shards from a config file."),
    ("eval", "Evaluate a checkpoint (mIoU per class) on a shard split."),
    ("predict", "Restore and segment images with a checkpoint."),
    ("import-checkpoint", "Convert a checkpoint of the original code to this format."),
    ("compare", "Compare evaluation results of several runs in one table."),
):
    not_implemented_command(main, _name, _summary)


if __name__ == "__main__":
    main()
