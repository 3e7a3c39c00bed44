"""``fbseg``: spatial-feedback restoration + segmentation models on the command line.

torch is never imported at module level here, so ``fbseg --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

import click

from feedbackseg.config import (
    DEVICES,
    INPUTS,
)
from turbsim_cli.fbseg_errors import (
    check_output_place,
    config_error,
    interrupted,
    reported,
)
from turbsim_cli.options import (
    OneLineErrorGroup,
    bad_parameter,
    describe_defaults,
    os_error,
    package_version,
    require_torch,
    user_errors,
)
from turbsim_cli.progress_bar import (
    QUIET,
    Reporter,
    show_library_notices,
    verbosity,
    verbosity_options,
)
from turbsim_cli.train_options import train_options

#: Library error key -> flag of ``fbseg eval`` / ``fbseg predict``.
EVAL_FLAGS = {
    "height": "--height",
    "batch_size": "--batch-size",
    "num_workers": "--workers",
    "device": "--device",
    "input": "--input",
    "split": "--split",
}
#: Library error key -> flag of ``fbseg study``.
STUDY_FLAGS = {"study": "--study", "only": "--only", "seeds": "--seeds"}


@click.group(name="fbseg", cls=OneLineErrorGroup)
@click.version_option(package_version(), prog_name="fbseg")
def main() -> None:
    """Train and evaluate segmentation models on turbulence-distorted images (turbsim shards)."""
    require_torch()
    show_library_notices()


@main.command("train")
@click.argument("shards", metavar="SHARDS", type=click.Path(file_okay=False))
@click.option(
    "--out",
    "out",
    metavar="RUN",
    required=True,
    type=click.Path(file_okay=False),
    help="Run folder: config.json, metrics.jsonl, last.pt, best.pt.",
)
@train_options
@verbosity_options
def train(
    shards: str,
    out: str,
    recipe: str | None,
    config_file: str | None,
    quiet: bool,
    verbose: bool,
    **flags: Any,
) -> None:
    """Train a model on turbsim shards (SHARDS) into the run folder RUN.

    Defaults come from the recipe (bmvc2020: the paper's schedule), then --config, then the
    flags. Multi-GPU: torchrun --nproc-per-node N --no-python fbseg train SHARDS --out RUN ...
    """
    from feedbackseg.data.workers import sigterm_as_interrupt

    level = verbosity(quiet, verbose)
    try:
        with sigterm_as_interrupt(), Reporter(level, "train", "step") as reporter:
            result = _train(shards, out, recipe, config_file, flags, reporter)
    except KeyboardInterrupt as error:  # a training says what it keeps
        raise interrupted(error, f"interrupted before training started: {out} is as it was; "
                          "rerun the same command") from None  # fmt: skip
    if result.rank != 0:
        return  # under torchrun rank 0 reports
    if result.best_psnr_gain_db is not None:  # the restore mode: R alone
        best = f"best val PSNR gain {result.best_psnr_gain_db:+.3f} dB"
    else:
        best = "best val mIoU " + (
            "n/a" if result.best_miou is None else f"{100 * result.best_miou:.2f} %"
        )
    click.echo(f"{result.run_dir}: {result.step} steps, {best}")


def _train(
    shards: str,
    out: str,
    recipe: str | None,
    config_file: str | None,
    flags: dict,
    reporter: Reporter,
) -> Any:
    """Resolve the config and train (:func:`feedbackseg.training.train.train`); errors as one
    line."""
    from feedbackseg.config import resolve_config
    from feedbackseg.training.train import train as run_training

    given = {**flags, "recipe": recipe, "shards": shards, "out": out}
    with reported(
        writing=out,
        memory_hint="try a smaller --batch-size or --height",
        on_config_error=lambda error: config_error(error, given),  # the flags, --val-split...
    ):
        config = resolve_config(shards, out, recipe, config_file, flags)
        reporter.detail(f"config: {config.to_json()}")
        return run_training(config, log=reporter.say, on_step=reporter.progress)


_DEVICE = click.Choice(DEVICES)


@main.command("eval", short_help="Evaluate a checkpoint (mIoU per class) on a shard split.")
@click.argument("checkpoint", metavar="CHECKPOINT", type=click.Path(dir_okay=False))
@click.argument("shards", metavar="SHARDS", type=click.Path(file_okay=False))
@click.option("--split", default="val", show_default=True, help="Shard split to evaluate.")
@click.option(
    "--height",
    type=click.IntRange(min=1),
    default=None,
    help="Evaluation height [px], width keeps the aspect. [the checkpoint's training height]",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    default=None,
    help="Feedback iterations T. [the checkpoint's]",
)
@click.option(
    "--json",
    "json_path",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the result as JSON (miou, per_class, ...).",
)
@click.option(
    "--save-predictions",
    metavar="DIR",
    type=click.Path(file_okay=False),
    default=None,
    help="Write colourised predictions (Cityscapes palette), NAME.png per sample.",
)
@click.option("--device", type=_DEVICE, default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--workers", type=click.IntRange(min=0), default=0, show_default=True, help="Loader processes."
)
@click.option(
    "--input",
    "input_kind",
    type=click.Choice(INPUTS),
    default="distorted",
    show_default=True,
    help="Network input: the split's distorted images or its clean ones.",
)
@verbosity_options
def evaluate_command(
    checkpoint: str,
    shards: str,
    split: str,
    height: int | None,
    iterations: int | None,
    json_path: str | None,
    save_predictions: str | None,
    device: str,
    batch_size: int,
    workers: int,
    input_kind: str,
    quiet: bool,
    verbose: bool,
) -> None:
    """Evaluate CHECKPOINT (RUN/best.pt, say) on a split of the turbsim shards SHARDS.

    Prints the per-class IoU table, mIoU (official Cityscapes definition), pixel accuracy, the
    evaluation resolution and, for feedback models, the mIoU after each iteration.
    Multi-GPU: torchrun --nproc-per-node N --no-python fbseg eval CHECKPOINT SHARDS ...
    """
    from feedbackseg.devices.distributed import DeviceError, setup_distributed
    from feedbackseg.evaluation.evaluate import evaluate_checkpoint, write_json
    from feedbackseg.evaluation.inference import checkpoint_mode
    from feedbackseg.evaluation.restoration import checkpoint_restoration, format_restoration
    from feedbackseg.modes import mode_of

    check_output_place(json_path, save_predictions)
    level = verbosity(quiet, verbose)
    try:
        ctx = setup_distributed(device)
    except DeviceError as error:
        raise bad_parameter(error, EVAL_FLAGS) from None
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    evaluation = restoration = None
    reporter = Reporter(level if ctx.is_main else QUIET, "eval", "img")
    try:
        with reported(EVAL_FLAGS, save_predictions, "try a smaller --height or --batch-size"):
            mode = checkpoint_mode(checkpoint)
            kind = mode_of(mode)
            reporter.detail(f"evaluating {checkpoint} ({mode}) on {shards} split {split!r}, "
                            f"device {ctx.device}")  # fmt: skip
            if kind.segmenter:
                evaluation = evaluate_checkpoint(
                    checkpoint,
                    shards,
                    split,
                    height=height,
                    iterations=iterations,
                    device=ctx.device,
                    batch_size=batch_size,
                    save_predictions=save_predictions,
                    num_workers=workers,
                    input=input_kind,
                    progress=reporter.progress,
                )
                reporter.close()
            if kind.restorer and ctx.is_main:
                restoration = checkpoint_restoration(
                    checkpoint, shards, split, height, iterations, ctx.device
                )
    finally:
        reporter.close()
        ctx.close()
    if not ctx.is_main:
        return
    if evaluation is not None:
        click.echo(evaluation.report(), nl=False)
    if restoration is not None:
        click.echo(format_restoration(restoration), nl=False)
    if json_path is not None:
        data = evaluation.to_dict() if evaluation is not None else {"mode": mode}
        if restoration is not None:
            data["restoration"] = restoration
        try:
            write_json(json_path, data)
        except OSError as error:
            raise os_error(error, json_path) from None
        click.echo(f"wrote {json_path}")
    if save_predictions is not None and evaluation is not None:
        click.echo(f"wrote {evaluation.result.samples} predictions to {save_predictions}")


@main.command("study", short_help="Train and compare a grid of cells x seeds (the paper's study).")
@click.argument("shards", metavar="SHARDS", type=click.Path(file_okay=False))
@click.option(
    "--out",
    "out",
    metavar="STUDY",
    required=True,
    type=click.Path(file_okay=False),
    help="Study folder: runs/CELL/seed-N/, results.json, results.md, study.png.",
)
@click.option(
    "--study",
    "study_spec",
    metavar="FILE.toml|NAME",
    default="cpu",
    show_default=True,
    help="A study file, or a shipped study: cpu (small networks), paper (the paper's grid).",
)
@click.option("--seeds", default=None, help="Comma-separated seeds. [the study's, else 0,1,2]")
@click.option(
    "--only",
    metavar="CELL[:SEED]",
    default=None,
    help="Train only this cell (or run), e.g. for a SLURM array; results once all are done.",
)
@click.option("--resume", is_flag=True, help="Continue unfinished runs (finished ones are kept).")
@click.option("--device", type=_DEVICE, default=None, help="Device of every run. [the study's]")
@verbosity_options
def study_command(
    shards: str,
    out: str,
    study_spec: str,
    seeds: str | None,
    only: str | None,
    resume: bool,
    device: str | None,
    quiet: bool,
    verbose: bool,
) -> None:
    """Train every cell of a study once per seed on SHARDS, evaluate, and compare.

    Each run is an ordinary run folder STUDY/runs/CELL/seed-N (resumable; a finished run is
    skipped). Once all runs are finished: results.json (mIoU per seed, mean, 95 % interval, the
    harm of turbulence and the fraction each cell recovers), results.md, study.png.
    """
    from feedbackseg.data.workers import sigterm_as_interrupt

    check_output_place(out)
    reporter = Reporter(verbosity(quiet, verbose), "study", "run")
    study_errors = reported(
        STUDY_FLAGS,
        out,  # the study's own files: the study folder
        "try a smaller height or batch size",
        on_config_error=lambda error: click.ClickException(str(error)),  # a cell's value
    )
    try:
        with study_errors, sigterm_as_interrupt():  # SIGTERM ends the study as Ctrl-C does
            outcome = _run_study(shards, out, study_spec, seeds, only, resume, device, reporter)
    except KeyboardInterrupt as error:  # a training's line says what its run keeps
        raise interrupted(error, f"interrupted: rerun with --resume to continue {out}") from None
    done = f"{len(outcome.trained)} run(s) trained, {len(outcome.skipped)} found finished"
    if outcome.pending:
        click.echo(f"{out}: {done}; {len(outcome.pending)} run(s) of the study still to finish")
    else:
        click.echo(f"{out}: {done}; wrote {', '.join(p.name for p in outcome.written)}")


def _run_study(
    shards: str,
    out: str,
    study_spec: str,
    seeds: str | None,
    only: str | None,
    resume: bool,
    device: str | None,
    reporter: Reporter,
) -> Any:
    """:func:`feedbackseg.study.runner.run_study` of the command's options."""
    import dataclasses

    from feedbackseg.study.runner import run_study
    from feedbackseg.study.study_file import load_study, parse_only, parse_seeds

    study = load_study(study_spec)
    if seeds is not None:
        study = dataclasses.replace(study, seeds=parse_seeds(seeds))
    selected = parse_only(only, study) if only is not None else None
    return run_study(
        study,
        shards,
        out,
        only=selected,
        resume=resume,
        overrides={"device": device} if device is not None else None,
        log=reporter.say,
    )


@main.command("predict", short_help="Restore and segment images with a checkpoint.")
@click.argument("checkpoint", metavar="CHECKPOINT", type=click.Path(dir_okay=False))
@click.argument("inputs", metavar="IMAGE_OR_DIR...", nargs=-1, required=True)
@click.option(
    "--out",
    metavar="DIR",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder: NAME_seg.png (NAME_labelIds.png with --format labelids), "
    "NAME_restored.png, NAME_sheet.png.",
)
@click.option(
    "--height",
    type=click.IntRange(min=1),
    default=None,
    help="Processing height [px], a multiple of 16. [the checkpoint's training height]",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    default=None,
    help="Feedback iterations T. [the checkpoint's]",
)
@click.option("--device", type=_DEVICE, default="auto", show_default=True)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["palette", "labelids"]),
    default="palette",
    show_default=True,
    help="palette: NAME_seg.png in the Cityscapes colours; labelids: NAME_labelIds.png, the "
    "official label ids at the input's size (what the Cityscapes benchmark evaluates).",
)
def predict_command(
    checkpoint: str,
    inputs: tuple[str, ...],
    out: str,
    height: int | None,
    iterations: int | None,
    device: str,
    output_format: str,
) -> None:
    """Restore and segment images (PNG/JPEG files or folders of them) with CHECKPOINT.

    Writes, per image NAME, the segmentation in the Cityscapes palette (NAME_seg.png), the
    restored image (NAME_restored.png, restoration modes) and both beside the input
    (NAME_sheet.png), at the processing size. With --format labelids NAME_labelIds.png
    replaces NAME_seg.png: one channel of official Cityscapes label ids at the input's size.
    """
    from feedbackseg.evaluation.predict import collect_images, predict_checkpoint

    check_output_place(out)
    with reported(EVAL_FLAGS, out, "try a smaller --height"):
        images = collect_images(inputs)  # bad paths fail before the model loads
        written = predict_checkpoint(
            checkpoint, images, out, height, iterations, device, output_format
        )
    click.echo(f"{len(images)} image(s) -> {len(written)} files in {out}")


@main.command("import-checkpoint")
@click.argument("source", metavar="IN", type=click.Path(dir_okay=False))
@click.argument("dest", metavar="OUT", type=click.Path(dir_okay=False))
@user_errors(on_os_error=lambda error, params: os_error(error, params["dest"]))
def import_checkpoint(source: str, dest: str) -> None:
    """Convert a checkpoint of the original code (IN) to this package's format (OUT).

    IN: erfnet_pretrained.pth, the BMVC 2020 model_best.pth or rmodel_best.pth, or
    erfnet_encoder_pretrained.pth.tar. The network is detected from the keys.
    """
    import warnings

    from feedbackseg.runs.original import import_original_info, save_imported

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = import_original_info(source)
    save_imported(info, dest)
    for note in info.notes:
        click.echo(f"note: {note}", err=True)
    classes = "" if info.num_classes is None else f", {info.num_classes} classes"
    click.echo(f"{source}: {info.kind}{classes}; wrote {dest}")


@main.command("compare", short_help="Compare evaluation results of several runs.")
@click.argument("sources", metavar="RUN_OR_JSON...", nargs=-1, required=True)
@click.option(
    "--markdown",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the table to FILE.",
)
@click.option(
    "--png",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write a per-class IoU bar chart (needs matplotlib).",
)
@user_errors(on_os_error=lambda error, _: os_error(error))
def compare(sources: tuple[str, ...], markdown: str | None, png: str | None) -> None:
    """Compare evaluation results: a Markdown table of per-class IoU, mIoU and pixel accuracy.

    Each RUN_OR_JSON is a file written by `fbseg eval --json`, or a run folder (its eval.json,
    or else the last validation record of its metrics.jsonl).
    """
    from feedbackseg.evaluation.compare import comparison_markdown, load_result, result_label
    from feedbackseg.evaluation.evaluate import write_text
    from feedbackseg.evaluation.plots import plot_per_class_iou, require_matplotlib

    check_output_place(markdown, png)
    try:
        if png is not None:
            require_matplotlib()
        results: dict[str, dict] = {}
        for source in sources:
            label = result_label(source)
            results[source if label in results else label] = load_result(source)
        table = comparison_markdown(results)
        click.echo(table, nl=False)
        if markdown is not None:
            write_text(markdown, table)
            click.echo(f"wrote {markdown}")
        if png is not None:
            plot_per_class_iou({k: r["per_class"] for k, r in results.items()}, png)
            click.echo(f"wrote {png}")
    except ImportError as error:  # matplotlib missing: how to install it
        raise click.ClickException(str(error)) from None


@main.command("plot", short_help="Draw a run's training curves (PNG).")
@click.argument("run", metavar="RUN", type=click.Path(file_okay=False))
@click.option(
    "--out",
    metavar="FILE.png",
    required=True,
    type=click.Path(dir_okay=False),
    help="The PNG to write.",
)
@user_errors(on_os_error=lambda error, params: os_error(error, params["out"]))
def plot(run: str, out: str) -> None:
    """Draw the training curves of RUN (losses and validation mIoU vs step) from metrics.jsonl.

    Needs matplotlib: pip install 'turbsim-feedbackseg[viz]'.
    """
    from feedbackseg.evaluation.plots import plot_training_curves

    check_output_place(out)
    try:
        plot_training_curves(run, out)
    except ImportError as error:  # matplotlib missing: how to install it
        raise click.ClickException(str(error)) from None
    click.echo(f"wrote {out}")


describe_defaults(
    train,
    config_file="none",
    recipe="the paper's optimisation (bmvc2020)",
    max_steps="from --epochs",
    pretrained_encoder="none (random init)",
    pretrained_restorer="none",
    val_split="val, if the shards have it",
)
describe_defaults(evaluate_command, json_path="not written", save_predictions="not written")
describe_defaults(study_command, only="every run of the study")
describe_defaults(compare, markdown="not written", png="not written")


if __name__ == "__main__":
    main()
