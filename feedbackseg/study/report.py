"""Aggregation of a finished study: ``results.json``, ``results.md`` and ``study.png``.

``results.json`` is a contract (read by checks outside this repository; keep its keys)::

    {"cells": {CELL: {"seeds": [..], "miou": [per seed, distorted val, %], "miou_mean": ..,
                      "miou_ci95": .., "miou_clean": [per seed, clean val, %] (cells trained
                      on clean input only), "per_class_mean": {class: IoU %},
                      "recovered": .., "recovered_ci95": .., and for restoration cells
                      "psnr_restored", "psnr_distorted" [dB], "flow_epe_px" (shards with flow)
                      [, "flow_epe_zero_px"], and for feedback cells "miou_feedback_zeroed",
                      "miou_per_iteration_mean"},
               ...},
     "harm": {"mean": .., "ci95": ..}, "resolution": "HxW", "steps": .., "paper": {...}}

- ``miou_ci95`` (and every ``*_ci95``): half-width of the 95 % Student-t interval of the mean,
  ``t.ppf(0.975, n - 1) * s / sqrt(n)`` with ``s`` the sample standard deviation (ddof 1);
  None for a single seed.
- ``harm``: per seed, the mIoU of the clean-trained ERFNet (mode erfnet, input clean) on the
  clean val images minus the mIoU of ERFNet trained and evaluated on distorted images (mode
  erfnet, input distorted), paired by seed [mIoU points]; None when the study lacks a cell.
- ``recovered``: per seed, ``(miou_cell - miou_erfnet) / harm``, mean and 95 % interval.
- ``per_class_mean``: the mean over seeds of each class's IoU [%] (classes absent from a run's
  ground truth and prediction are left out of that class's mean; None when absent in all).
- ``psnr_*``, ``flow_epe_px``: means over seeds of the per-run values; ``flow_epe_zero_px``:
  the same for a flow of zero (the mean length of the true inverse displacement), the scale
  against which R's EPE says how much of the displacement R undoes; ``flow_length_px``: the
  mean length of R's flow; ``psnr_oracle_flow``: the PSNR of the input warped with the
  fixed-point inverse of the stored flow (not a ceiling: where the stored flow folds it has no
  inverse); :data:`RESTORATION_KEYS` and :data:`PER_SEED_KEYS` hold the diagnostics of
  :mod:`feedbackseg.evaluation.restoration` (the smoothed inverse, PSNR gains on val and training
  images); ``feedback_flow_change_px``
  (feedback cells): the mean length of
  R's last flow minus its first, i.e. how much the feedback signal moves the restoration.
- ``miou_feedback_zeroed`` (feedback cells): per seed, the mIoU after the first feedback
  iteration, where the feedback signal is exactly zero (its delta of logits is
  ``logits_0 - logits_0``): the method with its feedback switched off, same weights.
  ``miou_per_iteration_mean``: the mean over seeds of the mIoU after each iteration t = 1..T.
- ``steps``: the runs' training length in steps (one number; a dict by cell if they differ).
- ``paper``: the deltas the papers report.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from feedbackseg.json_values import json_safe
from turbsim import _files

__all__ = [
    "CURVES_PNG",
    "PAPER",
    "RESULTS_JSON",
    "RESULTS_MD",
    "STUDY_PNG",
    "aggregate",
    "ci95",
    "references",
    "results_markdown",
    "write_results",
]

#: Restoration keys of a run's evaluation (:mod:`feedbackseg.evaluation.restoration`) whose mean
#: over seeds a restoration cell reports.
RESTORATION_KEYS = (
    "psnr_restored",
    "psnr_distorted",
    "flow_epe_px",
    "flow_epe_zero_px",
    "psnr_oracle_flow",
    "flow_length_px",
    "feedback_flow_change_px",
    "flow_epe_smooth_zero_px",
    "psnr_warp_reference",
    "inverse_residual_px",
    "fold_fraction_stored",
)
#: ... and those reported per seed too, with their 95 % intervals (``KEY_per_seed``,
#: ``KEY_ci95``): R's PSNR gain on val and on training images (memorisation shows as a gap),
#: and its flow against the smoothed inverse.
PER_SEED_KEYS = ("psnr_gain_db", "psnr_gain_train_db", "flow_epe_smooth_px", "flow_cosine_smooth")

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
STUDY_PNG = "study.png"
#: Training curves of every cell (mean over seeds), next to study.png.
CURVES_PNG = "curves.png"

#: What the papers report (SPEC-feedbackseg section 6: the BMVC 2020 abstract, Rai et al.; the
#: WACV 2020 paper, Rai et al.), in mIoU points on distorted Cityscapes val.
PAPER: dict[str, Any] = {
    "feedback_over_erfnet": 17.41,
    "cb_ifl_share": 1.9,
    "restore_seg_over_erfnet": 12.71,
    "source": (
        "Rai et al., BMVC 2020, abstract: the feedback method +17.41 mIoU over ERFNet on "
        "distorted Cityscapes, of which +1.9 mIoU from CB-iFL; Rai et al., WACV 2020 "
        "(restoration + segmentation, no feedback): +12.71 IoU"
    ),
}


def ci95(values: Sequence[float]) -> float | None:
    """Half-width of the 95 % Student-t interval of the mean of ``values`` (None for n < 2)."""
    from scipy import stats

    data = np.asarray([v for v in values if v is not None], dtype=np.float64)
    n = data.size
    if n < 2:
        return None
    return float(stats.t.ppf(0.975, n - 1) * data.std(ddof=1) / math.sqrt(n))


def _mean(values: Sequence[float | None]) -> float | None:
    data = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(data)) if data else None


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * float(value)


def _reference(cells: Mapping[str, Any], mode: str, input: str, preferred: str) -> str | None:
    """The cell named ``preferred`` if it has that mode and input, else the first that has."""
    matches = [n for n, c in cells.items() if c.mode == mode and c.input == input]
    return preferred if preferred in matches else (matches[0] if matches else None)


def references(study: Any) -> tuple[str | None, str | None]:
    """(clean-trained ERFNet cell, distorted ERFNet cell) of the harm; None where missing.

    ``erfnet-clean`` / ``erfnet`` when they have the right mode and input, else the first cell
    that has (mode erfnet, input clean / distorted).
    """
    return (
        _reference(study.cells, "erfnet", "clean", "erfnet-clean"),
        _reference(study.cells, "erfnet", "distorted", "erfnet"),
    )


def _cell_summary(cell: Any, runs: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    seeds = sorted(runs)
    miou = [_pct(runs[s]["miou"]) for s in seeds]
    out: dict[str, Any] = {
        "seeds": seeds,
        "miou": miou,
        "miou_mean": _mean(miou),
        "miou_ci95": ci95(miou),
    }
    if cell.input == "clean":
        out["miou_clean"] = [_pct(runs[s].get("miou_clean")) for s in seeds]
    classes = list(runs[seeds[0]]["per_class"])
    out["per_class_mean"] = {
        k: _mean([_pct(runs[s]["per_class"].get(k)) for s in seeds]) for k in classes
    }
    if cell.restores:
        for key in RESTORATION_KEYS:
            if all(key in runs[s] for s in seeds):
                out[key] = _mean([runs[s][key] for s in seeds])
        for key in PER_SEED_KEYS:  # the diagnostics a reader weighs: per seed, with intervals
            if all(runs[s].get(key) is not None for s in seeds):
                values = [runs[s][key] for s in seeds]
                out[key] = _mean(values)
                out[f"{key}_per_seed"] = values
                out[f"{key}_ci95"] = ci95(values)
    if all(len(runs[s].get("miou_per_iteration") or []) > 1 for s in seeds):
        per_t = [[_pct(v) for v in runs[s]["miou_per_iteration"]] for s in seeds]
        out["miou_feedback_zeroed"] = [row[0] for row in per_t]
        out["miou_per_iteration_mean"] = [_mean(list(col)) for col in zip(*per_t, strict=True)]
    return out


def aggregate(
    study: Any, evaluations: Mapping[str, Mapping[int, Mapping[str, Any]]]
) -> dict[str, Any]:
    """``results.json`` (see the module docstring) from every run's evaluation.

    Args:
        study: the :class:`feedbackseg.study.study_file.Study`.
        evaluations: cell -> seed -> the run's :func:`feedbackseg.study.runner.evaluate_run` dict.
    """
    cells = {name: _cell_summary(study.cells[name], evaluations[name]) for name in study.cells}
    clean_ref, dist_ref = references(study)
    harm: dict[str, Any] = {"mean": None, "ci95": None}
    per_seed_harm: dict[int, float] = {}
    if clean_ref is not None and dist_ref is not None:
        clean, dist = cells[clean_ref], cells[dist_ref]
        clean_by_seed = dict(zip(clean["seeds"], clean["miou_clean"], strict=True))
        dist_by_seed = dict(zip(dist["seeds"], dist["miou"], strict=True))
        for seed in sorted(set(clean_by_seed) & set(dist_by_seed)):
            if clean_by_seed[seed] is not None and dist_by_seed[seed] is not None:
                per_seed_harm[seed] = clean_by_seed[seed] - dist_by_seed[seed]
        values = list(per_seed_harm.values())
        harm = {"mean": _mean(values) if values else None, "ci95": ci95(values)}
    for summary in cells.values():
        recovered = []
        if dist_ref is not None:
            base = dict(zip(cells[dist_ref]["seeds"], cells[dist_ref]["miou"], strict=True))
            for seed, value in zip(summary["seeds"], summary["miou"], strict=True):
                h = per_seed_harm.get(seed)
                if h and value is not None and base.get(seed) is not None:
                    recovered.append((value - base[seed]) / h)
        summary["recovered"] = _mean(recovered) if recovered else None
        summary["recovered_ci95"] = ci95(recovered) if recovered else None
    runs = [r for by_seed in evaluations.values() for r in by_seed.values()]
    h, w = runs[0]["resolution"]
    steps_by_cell = {n: max(r["steps"] for r in evaluations[n].values()) for n in study.cells}
    steps: Any = steps_by_cell
    if len(set(steps_by_cell.values())) == 1:
        steps = next(iter(steps_by_cell.values()))
    return {
        "cells": cells,
        "harm": harm,
        "resolution": f"{h}x{w}",
        "steps": steps,
        "paper": dict(PAPER),
    }


def _paired_delta(
    cell: Mapping[str, Any], base: Mapping[str, Any]
) -> tuple[float | None, float | None]:
    """Mean and 95 % half-width of ``cell - base`` mIoU, paired by seed."""
    by_seed = dict(zip(base["seeds"], base["miou"], strict=True))
    deltas = [
        v - by_seed[s]
        for s, v in zip(cell["seeds"], cell["miou"], strict=True)
        if v is not None and by_seed.get(s) is not None
    ]
    if not deltas:  # a cell that segments nothing (R alone)
        return None, None
    return float(np.mean(deltas)), ci95(deltas)


def _fmt(mean: float | None, half: float | None = None, digits: int = 2, sign: bool = False) -> str:
    if mean is None:
        return "n/a"
    text = f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}"
    return text if half is None else f"{text} ± {half:.{digits}f}"


def _paper_delta(cell: Any) -> str:
    if cell.mode == "feedback" and cell.loss == "cb-ifl" and cell.input == "distorted":
        return f"+{PAPER['feedback_over_erfnet']}"
    if cell.mode == "restore-seg" and cell.input == "distorted":
        return f"+{PAPER['restore_seg_over_erfnet']} (WACV 2020)"
    return ""


def results_markdown(study: Any, results: Mapping[str, Any]) -> str:
    """The study's table (mIoU, paired deltas over ERFNet next to the paper's, recovered
    fraction of the harm, restoration quality) and how to read it, as Markdown."""
    cells, harm = results["cells"], results["harm"]
    dist_ref = references(study)[1]
    lines = [
        f"# Study results ({_source_name(study)})",
        "",
        f"Distorted val split at {results['resolution']} (H x W) px, {results['steps']} training "
        f"steps per run, seeds {', '.join(map(str, study.seeds))}. mIoU in %; ± is the "
        "half-width of the 95 % t-interval over seeds; deltas are paired by seed.",
        "",
        "| cell | mode | loss | input | mIoU (distorted val) | mIoU (clean val) | "
        "Δ over ERFNet | paper Δ | recovered | PSNR restored / distorted [dB] | flow EPE [px] |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, summary in cells.items():
        cell = study.cells[name]
        clean = summary.get("miou_clean")
        clean_text = _fmt(_mean(clean), ci95(clean)) if clean else ""
        delta = ""
        if dist_ref is not None and name != dist_ref:
            delta = _fmt(*_paired_delta(summary, cells[dist_ref]), sign=True)
        rec = _fmt(summary["recovered"], summary["recovered_ci95"])
        psnr = ""
        if "psnr_restored" in summary:
            psnr = f"{summary['psnr_restored']:.2f} / {summary['psnr_distorted']:.2f}"
        epe = _fmt(summary.get("flow_epe_px")) if "flow_epe_px" in summary else ""
        lines.append(
            f"| {name} | {cell.mode} | {cell.loss} | {cell.input} | "
            f"{_fmt(summary['miou_mean'], summary['miou_ci95'])} | {clean_text} | {delta} | "
            f"{_paper_delta(cell)} | {rec} | {psnr} | {epe} |"
        )
    lines.append("")
    if harm["mean"] is None:
        lines.append(
            "Harm and recovered fractions: n/a (the study lacks an ERFNet cell trained on clean "
            "input, mode erfnet + input clean, or one trained on distorted input)."
        )
    else:
        lines.append(
            f"Harm of turbulence: {_fmt(harm['mean'], harm['ci95'])} mIoU points (ERFNet trained "
            "and evaluated on clean images minus ERFNet trained and evaluated on distorted ones). "
            "'recovered' is the fraction of that harm a cell wins back over ERFNet."
        )
    lines += _restoration_table(cells)
    lines += _diagnostics(cells)
    lines += [
        "",
        f"Paper: {PAPER['source']}. The CB-iFL share (+{PAPER['cb_ifl_share']}) compares with "
        "a feedback cell with loss cb-ifl minus one with loss ce. The papers' numbers are on "
        "real Cityscapes with full training; a short synthetic study measures the same "
        "quantities, not the same values.",
        "",
    ]
    return "\n".join(lines)


def _source_name(study: Any) -> str:
    """The study's source for titles: a shipped name as is, a file by its name alone (no path
    of the machine that ran it in committed results)."""
    source = str(study.source)
    return source if source.startswith("shipped:") else Path(source).name


def _restoration_table(cells: Mapping[str, Any]) -> list[str]:
    """Markdown: R's PSNR gain on val and training images, its flow against the smoothed
    inverse of the stored flow (feedbackseg.evaluation.restoration), per cell with a restorer."""
    rows = [(n, s) for n, s in cells.items() if "psnr_gain_db" in s]
    if not rows:
        return []
    lines = [
        "",
        "Restoration (R's PSNR gain = restored minus distorted; a training-image gain far above "
        "the val one is memorisation; EPE and cosine against the inverse of the stored flow "
        "smoothed by 2 px; the warp reference is the input warped with that inverse, a "
        "reference, not a bound):",
        "",
        "| cell | gain val [dB] | gain train [dB] | R's flow [px] | EPE smooth [px] (zero flow) "
        "| cosine | warp reference [dB] | stored flow folds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in rows:
        epe = ""
        if s.get("flow_epe_smooth_px") is not None:
            zero = _fmt(s.get("flow_epe_smooth_zero_px"))
            epe = f"{_fmt(s['flow_epe_smooth_px'], s.get('flow_epe_smooth_px_ci95'))} ({zero})"
        fold = s.get("fold_fraction_stored")
        lines.append(
            f"| {name} | {_fmt(s['psnr_gain_db'], s.get('psnr_gain_db_ci95'), 3, True)} | "
            f"{_fmt(s.get('psnr_gain_train_db'), s.get('psnr_gain_train_db_ci95'), 3, True)} | "
            f"{_fmt(s.get('flow_length_px'))} | {epe} | "
            f"{_fmt(s.get('flow_cosine_smooth'), s.get('flow_cosine_smooth_ci95'), 3)} | "
            f"{_fmt(s.get('psnr_warp_reference'))} | "
            f"{'' if fold is None else f'{100 * fold:.0f} %'} |"
        )
    return lines


def _diagnostics(cells: Mapping[str, Any]) -> list[str]:
    """Markdown lines: what R's flow undoes (EPE against a zero flow) and what the feedback
    signal adds at inference (mIoU after iteration T minus after iteration 1, where the signal
    is zero), per cell that has them; empty when none has."""
    lines: list[str] = []
    for name, summary in cells.items():
        if "flow_epe_px" in summary and "flow_epe_zero_px" in summary:
            epe, zero = summary["flow_epe_px"], summary["flow_epe_zero_px"]
            undone = 1.0 - epe / zero if zero else float("nan")
            verdict = (
                f"R undoes {100 * undone:.0f} % of the displacement"
                if undone >= 0
                else f"R's flow is worse than no flow (EPE {100 * -undone:.0f} % above it)"
            )
            length = summary.get("flow_length_px")
            size = "" if length is None else f"; R's flow is {length:.2f} px long on average"
            if summary.get("psnr_oracle_flow") is not None:
                size += (
                    f"; PSNR restored {summary['psnr_restored']:.2f} dB, input "
                    f"{summary['psnr_distorted']:.2f} dB, input warped with the true inverse "
                    f"displacement {summary['psnr_oracle_flow']:.2f} dB (not a ceiling: where the "
                    "stored flow folds it has no inverse)"
                )
            lines.append(
                f"- {name}: R's flow EPE {epe:.3f} px against {zero:.3f} px for no flow "
                f"(the true inverse displacement's mean length): {verdict}{size}."
            )
        zeroed = summary.get("miou_feedback_zeroed")
        if zeroed:
            last = dict(zip(summary["seeds"], summary["miou"], strict=True))
            first = dict(zip(summary["seeds"], zeroed, strict=True))
            gain = [last[s] - first[s] for s in summary["seeds"] if None not in (last[s], first[s])]
            per_t = ", ".join(
                f"t={t} {_fmt(m)}" for t, m in enumerate(summary["miou_per_iteration_mean"], 1)
            )
            change = summary.get("feedback_flow_change_px")
            moved = "" if change is None else (
                f"; it moves R's flow by {change:.2g} px on average"
            )  # fmt: skip
            lines.append(
                f"- {name}: mIoU with the feedback signal zeroed (iteration 1) "
                f"{_fmt(_mean(zeroed), ci95(zeroed))}; the feedback adds "
                f"{_fmt(_mean(gain), ci95(gain), sign=True)} points at inference "
                f"(per iteration: {per_t}){moved}."
            )
    return ["", "Diagnostics:", "", *lines] if lines else []


def _plot(study: Any, results: Mapping[str, Any], path: Path) -> None:
    """Bars of mIoU per cell with 95 % intervals (distorted val; clean val hatched); the
    whiskers are the 95 % t-intervals of the mean over seeds (said on the axis)."""
    from feedbackseg.evaluation.plots import require_matplotlib

    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cells = results["cells"]
    names = [n for n in cells if cells[n]["miou_mean"] is not None]  # R alone segments nothing
    figure = Figure(figsize=(max(5.0, 1.3 * len(names) + 2), 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    xs = np.arange(len(names), dtype=float)
    means = [cells[n]["miou_mean"] or 0.0 for n in names]
    errs = [cells[n]["miou_ci95"] or 0.0 for n in names]
    ax.bar(xs, means, 0.6, yerr=errs, capsize=4, label="distorted val")
    for x, name in zip(xs, names, strict=True):
        clean = cells[name].get("miou_clean")
        if clean:
            ax.bar(x + 0.35, _mean(clean) or 0.0, 0.25, yerr=ci95(clean) or 0.0, capsize=3,
                   hatch="//", color="white", edgecolor="C1", label="clean val")  # fmt: skip
    ax.set_xticks(xs, names, rotation=20, ha="right")
    ax.set_ylabel("mIoU [%] (whiskers: 95 % t-intervals over seeds)")
    harm = results["harm"]["mean"]
    title = f"{_source_name(study)}: {results['resolution']}, {results['steps']} steps"
    ax.set_title(title + ("" if harm is None else f", harm {harm:.1f} points"), fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=8)
    with _files.atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")


def _curve(records: Sequence[Mapping[str, Any]], kind: str, key: str) -> dict[int, float]:
    """step -> value of ``key`` in the records of ``kind`` (the last record of a step wins: a
    resumed run repeats the steps after its last checkpoint)."""
    return {
        int(r["step"]): float(r[key])
        for r in records
        if r.get("kind") == kind and isinstance(r.get(key), (int, float))
    }


def _plot_curves(study: Any, study_dir: Path, path: Path) -> None:
    """Training curves per cell, mean over seeds: the segmentation loss of the training steps
    and the validation mIoU (distorted val; clean val for cells trained on clean input)."""
    from feedbackseg.evaluation.plots import require_matplotlib
    from feedbackseg.runs.rundir import MetricsError, read_metrics
    from feedbackseg.study.study_file import run_dir

    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10.0, 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for index, name in enumerate(study.cells):
        curves: dict[str, list[dict[int, float]]] = {"loss": [], "miou": []}
        for seed in study.seeds:
            try:
                records = read_metrics(run_dir(study_dir, name, seed))
            except MetricsError:
                continue
            curves["loss"].append(_curve(records, "train", "loss_seg"))
            curves["miou"].append(_curve(records, "val", "val_miou"))
        for ax, key, scale in ((axes[0], "loss", 1.0), (axes[1], "miou", 100.0)):
            common = sorted(set.intersection(*(set(c) for c in curves[key]))) if curves[key] else []
            if common:
                means = [scale * float(np.mean([c[k] for c in curves[key]])) for k in common]
                ax.plot(common, means, marker="." if key == "miou" else None, color=f"C{index}",
                        label=name)  # fmt: skip
    axes[0].set(xlabel="step", ylabel="segmentation loss (train, mean over seeds)")
    axes[1].set(xlabel="step", ylabel="val mIoU [%] (mean over seeds)")
    for ax in axes:  # each panel its own legend: a cell may have no loss or no validation
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best", framealpha=0.7)
    figure.suptitle(f"{_source_name(study)}: training curves", fontsize=9)
    with _files.atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")


def write_results(
    study: Any,
    evaluations: Mapping[str, Mapping[int, Mapping[str, Any]]],
    study_dir: str | os.PathLike,
    say: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write ``results.json``, ``results.md`` and (with matplotlib) ``study.png`` and
    ``curves.png``; the paths. Each is published atomically, results.json last.

    Without matplotlib the PNG is skipped with a note (``say`` and results.md).
    """
    say = say or (lambda _: None)
    folder = Path(study_dir)
    results = aggregate(study, evaluations)
    markdown = results_markdown(study, results)
    written = [folder / RESULTS_JSON, folder / RESULTS_MD]
    try:
        _plot(study, results, folder / STUDY_PNG)
        written.append(folder / STUDY_PNG)
        _plot_curves(study, folder, folder / CURVES_PNG)
        written.append(folder / CURVES_PNG)
    except ImportError as error:
        note = f"{STUDY_PNG} not drawn: {error}"
        markdown += f"\nNote: {note}\n"
        say(f"note: {note}")
    _files.write_text(folder / RESULTS_MD, markdown)
    # last: a results.json on disk means every other result file of this aggregate is there
    _files.write_json(folder / RESULTS_JSON, json_safe(results), indent=2)
    for path in written:
        say(f"wrote {path}")
    return written
