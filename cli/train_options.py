"""The options of ``fbseg train`` as one decorator (they are many; the command stays short).

Each option's default is None ("not given"): the value then comes from the recipe or the
--config TOML file (:func:`feedbackseg.config.resolve_config`); the bracketed text of each help
is the ``bmvc2020`` default.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from feedbackseg.config import (
    CLASS_WEIGHTS,
    DEVICES,
    FLOW_INITS,
    FLOW_LOSSES,
    LOSSES,
    RESTORER_BN,
    TURBULENCE,
    TURBULENCE_RENDERS,
)

__all__ = ["train_options"]


def _run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of what to train and for how long."""

    @click.option(
        "--mode",
        type=click.Choice(("feedback", "restore-seg", "erfnet", "restore")),  # the method first
        default=None,
        help="feedback (the method), restore-seg or erfnet (baselines), restore (R alone on L1). "
        "[feedback]",
    )
    @click.option(
        "--loss",
        type=click.Choice(LOSSES),
        default=None,
        help="Segmentation loss. [cb-ifl]",
    )
    @click.option("--recipe", default=None, help="Named defaults: bmvc2020, bmvc2020-original.")
    @click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="TOML file of config keys (over the recipe, under the flags).",
    )
    @click.option("--epochs", type=int, default=None, help="Epochs to train. [150]")
    @click.option(
        "--max-steps", type=int, default=None, help="Steps to train (overrides --epochs)."
    )
    @click.option("--batch-size", type=int, default=None, help="Samples per step and process. [8]")
    @click.option("--height", type=int, default=None, help="Image height [px]. [224]")
    @click.option("--iterations", type=int, default=None, help="Feedback iterations T. [3]")
    @click.option("--workers", type=int, default=None, help="DataLoader worker processes. [2]")
    @click.option(
        "--device",
        type=click.Choice(DEVICES),
        default=None,
        help="auto = CUDA when available. [auto]",
    )
    @click.option(
        "--amp/--no-amp",
        default=None,
        help="Mixed precision (bf16 where supported, else fp16; fast on AMX CPUs). [off]",
    )
    @click.option(
        "--tf32/--no-tf32",
        default=None,
        help="CUDA: float32 convolutions in TF32 (faster, 10-bit mantissa). [off]",
    )
    @click.option(
        "--channels-last/--no-channels-last",
        default=None,
        help="Channels-last (NHWC) memory format. [on for CUDA only]",
    )
    @click.option("--seed", type=int, default=None, help="Root seed. [0]")
    @click.option("--checkpoint-every", type=int, default=None, help="Steps between last.pt. [500]")
    @click.option("--resume", is_flag=True, help="Continue RUN from RUN/last.pt.")
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return command(*args, **kwargs)

    return wrapper


def _more_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of precision, checkpoints, restorer, turbulence and rates."""

    @click.option("--overwrite", is_flag=True, help="Replace the run in RUN.")
    @click.option(
        "--pretrained-encoder",
        type=click.Path(dir_okay=False),
        default=None,
        help="ERFNet encoder weights of an original release (ImageNet or ERFNet).",
    )
    @click.option("--small", is_flag=True, default=None, help="Narrow restorer for CPU work.")
    @click.option(
        "--turbulence",
        type=click.Choice(TURBULENCE),
        default=None,
        help="Training images: the shards' stored distorted ones, or their clean ones distorted "
        "afresh at every draw (online; validation stays on the stored ones). [stored]",
    )
    @click.option(
        "--turbulence-render",
        type=click.Choice(TURBULENCE_RENDERS),
        default=None,
        help="With --turbulence online: fields at the native size then area-averaged, or drawn at "
        "the training size with the same law (much cheaper for large frames). [native]",
    )
    @click.option(
        "--flow-init",
        type=click.Choice(FLOW_INITS),
        default=None,
        help="R's flow head: as initialised (the paper) or zero (identity warp). [paper]",
    )
    @click.option(
        "--restorer-bn",
        type=click.Choice(RESTORER_BN),
        default=None,
        help="R's BatchNorm at inference: running statistics, or batch statistics as the "
        "original (which never calls eval()). [running]",
    )
    @click.option(
        "--flow-loss",
        type=click.Choice(FLOW_LOSSES),
        default=None,
        help="Also train R on the EPE of its flow against the smoothed inverse of the true "
        "displacement (stored flow or online turbulence). [none]",
    )
    @click.option(
        "--flow-weight", type=float, default=None, help="Weight of --flow-loss [1/px]. [1]"
    )
    @click.option(
        "--pretrained-restorer",
        type=click.Path(dir_okay=False),
        default=None,
        help="Start R from a run's checkpoint with a restorer or an original rmodel_best.pth.",
    )
    @click.option(
        "--turbulence-recipe",
        metavar="NAME|FILE",
        default=None,
        help="With --turbulence online: the turbsim recipe of the fresh distortion. "
        "[the shards' manifest recipe]",
    )
    @click.option(
        "--class-weights",
        type=click.Choice(CLASS_WEIGHTS),
        default=None,
        help="CB-iFL class weights. [shards]",
    )
    @click.option("--val-split", default=None, help="Validation split ('none': no validation).")
    @click.option("--val-every", type=int, default=None, help="Steps between validations. [epoch]")
    @click.option("--log-every", type=int, default=None, help="Steps between metrics lines. [10]")
    @click.option("--lr-s", type=float, default=None, help="Segmenter learning rate. [5e-4]")
    @click.option("--lr-r", type=float, default=None, help="Restorer learning rate. [2e-4]")
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return command(*args, **kwargs)

    return wrapper


def train_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add every ``fbseg train`` option but SHARDS and --out to ``command`` (in --help order)."""
    return _run_options(_more_options(command))
