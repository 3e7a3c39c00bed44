"""One training step of the spatial-feedback method: ours against a literal transcription.

Times ``feedbackseg.models.feedback.feedback_train_step`` (the fast form used by ``fbseg train``)
against ``naive_train_step`` below, a straight transcription of the original loop (SPEC 2.4 and
the release's ``train/main.py``, literally: the pre-loop passes R(x), S(restored) run with
autograd), with the same modules, the same initial weights (deep copies), Adam optimisers as in
SPEC 4 and the CB-iFL loss (BMVC 2020 weights, gammas 0, 0.1, 0.2). Batch 2, 224x448, T = 3, on
the CPU by default. Dropout is disabled (its modules are put in eval mode) so that the steps
must give equal losses; BatchNorm stays in train mode.

"Ours" runs in three forms (``--variants``), each compared with the naive loop (float32, NCHW):
- ``ours-nchw``: float32 NCHW. Drops only the autograd graph of the pre-loop passes, which cannot
  be skipped for T >= 2 (their logits are ``prev_logits`` at t = 2): losses, weights and BN
  running statistics are bit-identical to the naive loop.
- ``ours-nhwc``: float32 channels-last (``fbseg train --channels-last``; the default on CUDA).
  Not bit-identical: besides other convolution kernels, PyTorch's NHWC train-mode BatchNorm
  kernel on the CPU rounds ~30x worse than the NCHW one, which the "fwd err" column shows.
- ``ours-nhwc-bf16``: channels-last under bfloat16 autocast (``fbseg train --amp`` on the CPU);
  fast where the CPU has AMX / AVX-512 BF16, and not equal: bf16 keeps 8 significant bits.
A control row (untimed, ``--no-control`` skips it) runs the naive loop again on one thread:
the same math in another float32 summation order. It shows the size of "equal up to rounding"
over a few steps: Adam turns the pure-rounding gradients of the conv biases that precede a
train-mode BatchNorm (mathematically zero) into +-lr steps, so weights and BN statistics drift
apart while the losses stay within ~1e-3.

The "fwd err" column compares one train-mode forward pass S(R(x)) of each form with the same
pass in float64; the script also prints the feedback signal delta_t that R receives at t = 2, 3
of the first step (every method starts from the same weights) and the rms rounding noise of
S's logits: the measurements behind training in float32 by default. Also prints the ceiling of
any pass elimination (if the pre-loop passes were free), and the parameters and
multiply-accumulates (MACs, counted with forward hooks on Conv2d, ConvTranspose2d and Linear,
batch 1 at the benchmark resolution) of R and S.

Usage: python benchmarks/bench_feedback_step.py [--steps 3] [--small] [--threads N]
       [--variants ours-nchw,ours-nhwc,ours-nhwc-bf16] [--no-control] [--profile]
Prints a table and writes JSON (default benchmarks/results/feedback_step.json; with --small
feedback_step_small.json). Times are never asserted: tests/test_benchmarks.py runs it tiny and
checks only its equality and accuracy columns.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from feedbackseg.models import ERFNet, FeedbackSegmenter, Restorer, feedback_train_step
from feedbackseg.models.flow import warp
from feedbackseg.training.losses import BMVC2020_CLASS_WEIGHTS, CBiFLLoss, cb_ifl, iteration_gammas

NUM_CLASSES = 19


# ----------------------------------------------------------------------------- naive loop
def naive_train_step(
    model: FeedbackSegmenter,
    distorted: torch.Tensor,
    clean: torch.Tensor,
    label: torch.Tensor,
    opt_r: torch.optim.Optimizer,
    opt_s: torch.optim.Optimizer,
    class_weights: torch.Tensor,
    iterations: int = 3,
) -> dict[str, float]:
    """SPEC 2.4 transcribed line by line (what the original release does)."""
    restorer, segmenter = model.restorer, model.segmenter
    gammas = iteration_gammas(iterations)
    restored = restorer(distorted)  # no feedback
    logits = segmenter(restored)
    restored_prev = restored
    logits = logits.detach()  # "both detached copies"
    prev_logits = logits
    outputs, l1_values = [], []
    for _ in range(iterations):
        restored = restorer(distorted, delta=logits - prev_logits, prev=restored_prev.detach())
        opt_r.zero_grad()
        l1 = F.l1_loss(restored, clean)
        l1.backward()
        opt_r.step()
        logits_t = segmenter(restored.detach())
        outputs.append(logits_t)
        l1_values.append(float(l1.detach()))
        prev_logits, logits = logits, logits_t.detach()
        restored_prev = restored
    loss = sum(cb_ifl(z, label, class_weights, g) for z, g in zip(outputs, gammas, strict=True))
    opt_s.zero_grad()
    loss.backward()
    opt_s.step()
    return {
        "loss_seg": float(loss.detach()),
        "loss_l1": sum(l1_values) / len(l1_values),
        "loss_l1_last": l1_values[-1],
    }


# ----------------------------------------------------------------------------- helpers
def build(small: bool, seed: int) -> FeedbackSegmenter:
    torch.manual_seed(seed)
    width = {"base_width": 8, "depth": 5} if small else {"base_width": 64, "depth": 5}
    restorer = Restorer(num_classes=NUM_CLASSES, feedback=True, **width)
    return FeedbackSegmenter(restorer, ERFNet(NUM_CLASSES))


def train_mode_without_dropout(model: nn.Module) -> None:
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()


def optimisers(model: FeedbackSegmenter) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """SPEC 4 (bmvc2020 recipe)."""
    opt_r = torch.optim.Adam(model.restorer.parameters(), lr=2e-4, betas=(0.9, 0.999))
    opt_s = torch.optim.Adam(
        model.segmenter.parameters(), lr=5e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=2e-4
    )
    return opt_r, opt_s


def synthetic_batch(batch: int, height: int, width: int, seed: int):
    """Smooth random clean images, a smooth random flow warp as the distortion, block labels."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3, height // 16, width // 16, generator=g)
    clean = F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)
    field = 3.0 * torch.randn(batch, 2, height // 32, width // 32, generator=g)
    field = F.interpolate(field, size=(height, width), mode="bicubic", align_corners=False)
    distorted = warp(clean, field)
    blocks = torch.randint(0, NUM_CLASSES, (batch, height // 16, width // 16), generator=g)
    label = blocks.repeat_interleave(16, 1).repeat_interleave(16, 2)
    label[:, :8] = 255
    return distorted, clean, label


def count_params(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def count_macs(module: nn.Module, *inputs, **kwargs) -> int:
    """MACs of one forward pass: Conv2d, ConvTranspose2d and Linear layers (batch 1)."""
    total = 0

    def hook(m: nn.Module, args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            total += out.numel() * (m.in_channels // m.groups) * k
        elif isinstance(m, nn.ConvTranspose2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            total += args[0].numel() * (m.out_channels // m.groups) * k
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            module(*inputs, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return total


@torch.no_grad()
def bn_stats_max_diff(a: nn.Module, b: nn.Module) -> tuple[float, str]:
    """(max over BN running-stat buffers of max|a - b| / max|b|, that buffer's name)."""
    diffs = [
        (float((x - y).abs().max() / y.abs().max().clamp_min(1e-12)), name)
        for (name, x), (_, y) in zip(a.named_buffers(), b.named_buffers(), strict=True)
        if name.endswith(("running_mean", "running_var"))
    ]
    worst = max(diffs) if diffs else (0.0, "")
    return worst if worst[0] > 0 else (0.0, "")


@torch.no_grad()
def params_max_diff(a: nn.Module, b: nn.Module) -> float:
    return max(
        float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


def _timed(fn):
    """(wall seconds, process CPU seconds summed over threads, fn())."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


class DeltaRecorder:
    """Keeps float32 copies of the feedback signal delta_t = logits(t-1) - logits(t-2) that
    R receives at each iteration, while ``active`` (a forward pre-hook on the restorer)."""

    def __init__(self, restorer: nn.Module) -> None:
        self.deltas: list[torch.Tensor] = []
        self.active = False
        restorer.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        delta = args[1] if len(args) > 1 else kwargs.get("delta")
        if self.active and delta is not None:
            self.deltas.append(delta.detach().float().contiguous().clone())


def rms(x: torch.Tensor) -> float:
    return float(x.double().pow(2).mean().sqrt())


def profile_fast_step(model, batch, opt_r, opt_s, seg_loss, iterations, rows=15) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        feedback_train_step(model, *batch, opt_r, opt_s, seg_loss, iterations=iterations)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


# ----------------------------------------------------------------------------- main
#: name -> (channels_last, autocast dtype, description). "ours" is the fast step of the trainer.
VARIANTS: dict[str, tuple[bool, torch.dtype | None, str]] = {
    "ours-nchw": (False, None, "ours, float32 NCHW: same passes minus autograd of the pre-loop"),
    "ours-nhwc": (True, None, "ours, float32 channels-last (--channels-last)"),
    "ours-nhwc-bf16": (True, torch.bfloat16, "ours, channels-last + bf16 autocast (--amp)"),
}


CONTROL = "control-naive-1-thread"
CONTROL_DESCRIPTION = "control: the naive loop again on 1 thread (float32 order only)"


def to_channels_last(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(
        x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x for x in batch
    )


@torch.no_grad()
def forward_error_vs_float64(
    base: FeedbackSegmenter,
    distorted: torch.Tensor,
    forms: dict[str, tuple[bool, torch.dtype | None]],
) -> dict[str, dict[str, float]]:
    """Max |y - y64| / max |y64| of restored = R(x) and logits = S(restored), and the rms
    error of the logits, train mode (BatchNorm on batch statistics, dropout off), for each
    (channels_last, autocast) form against the same forward pass in float64 NCHW. The form
    name ``TF32_EMULATED`` rounds every convolution's input and weight to TF32 (what CUDA does
    to float32 convolutions on Ampere and later unless told not to) and runs float32 NCHW."""
    ref = copy.deepcopy(base).double()
    train_mode_without_dropout(ref)
    restored_ref = ref.restorer(distorted.double())
    logits_ref = ref.segmenter(restored_ref)
    errors = {}
    for name, (channels_last, dtype) in forms.items():
        model = copy.deepcopy(base)
        train_mode_without_dropout(model)
        x = distorted
        if channels_last:
            model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        if name == TF32_EMULATED:
            emulate_tf32(model)
        with _autocast_or_not(dtype):
            restored = model.restorer(x)
            logits = model.segmenter(restored)
        errors[name] = {
            "restored": float(
                (restored.double() - restored_ref).abs().max() / restored_ref.abs().max()
            ),
            "logits": float((logits.double() - logits_ref).abs().max() / logits_ref.abs().max()),
            "logits_rms_error": rms(logits.double() - logits_ref),
            "logits_rms": rms(logits_ref),
        }
    return errors


TF32_EMULATED = "tf32-emulated"


def round_to_tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 ``x`` rounded (to nearest, ties to even) to TF32's 10 explicit mantissa bits."""
    bits = x.contiguous().view(torch.int32)
    bias = ((bits >> 13) & 1) + 0xFFF
    return ((bits + bias) & ~0x1FFF).view(torch.float32)


def emulate_tf32(model: nn.Module) -> None:
    """Round the weights of every (transposed) convolution to TF32 and their inputs on each
    call; products then accumulate in float32, as in a TF32 tensor-core convolution."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            with torch.no_grad():
                m.weight.copy_(round_to_tf32(m.weight))
            m.register_forward_pre_hook(lambda _m, args: (round_to_tf32(args[0]), *args[1:]))


def _autocast_or_not(dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cpu", dtype=dtype)


def pass_elimination_ceiling(r_macs: int, r_fb_macs: int, s_macs: int, iterations: int) -> float:
    """Upper bound on naive/ours from skipping the pre-loop passes entirely (which the math does
    not allow for T >= 2), counting MACs: a backward pass costs two forwards (input and weight
    gradients), R's first layer needs no input gradient (ignored: it only lowers the bound)."""
    per_iteration = 3 * r_fb_macs + 3 * s_macs  # R fwd+bwd, S fwd (+ its bwd after the loop)
    naive = r_macs + s_macs + iterations * per_iteration
    return naive / (naive - r_macs - s_macs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per method (after 1 warm-up)")
    ap.add_argument("--small", action="store_true", help="narrow restorer (base width 8)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--height", type=int, default=224)
    ap.add_argument("--width", type=int, default=448)
    ap.add_argument("--iterations", type=int, default=3, help="feedback iterations T")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated subset of {', '.join(VARIANTS)}",
    )
    ap.add_argument(
        "--no-control",
        dest="control",
        action="store_false",
        help="skip the control row (the naive loop again on 1 thread)",
    )
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.json is None:
        name = "feedback_step_small.json" if args.small else "feedback_step.json"
        args.json = Path(__file__).parent / "results" / name
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        ap.error(f"--variants: unknown {', '.join(unknown)}")
    b, h, w, T = args.batch, args.height, args.width, args.iterations

    base = build(args.small, args.seed)
    weights = BMVC2020_CLASS_WEIGHTS[:NUM_CLASSES]
    seg_loss = CBiFLLoss(weights, gamma_step=0.1)  # seg_loss(logits, label, t): gamma (t-1)/10
    data = synthetic_batch(b, h, w, args.seed + 1)

    # --- sizes (eval mode, batch 1: hooks do not touch BN statistics)
    probe = copy.deepcopy(base).eval()
    x1 = data[0][:1]
    zero_delta = torch.zeros(1, NUM_CLASSES, h, w)
    r_params = count_params(probe.restorer)
    fb_params = count_params(probe.restorer.trans_block)
    s_params = count_params(probe.segmenter)
    r_macs = count_macs(probe.restorer, x1)
    r_fb_macs = count_macs(probe.restorer, x1, zero_delta, torch.zeros_like(x1))
    s_macs = count_macs(probe.segmenter, x1)
    ceiling = pass_elimination_ceiling(r_macs, r_fb_macs, s_macs, T)
    del probe
    forms = {"naive": (False, None), TF32_EMULATED: (False, None)}
    forms |= {n: VARIANTS[n][:2] for n in names}
    fwd_errors = forward_error_vs_float64(base, data[0], forms)

    # --- one model copy, optimiser pair and batch per method, all from the same weights
    runners = {}
    naive = copy.deepcopy(base)
    train_mode_without_dropout(naive)
    opt_naive = optimisers(naive)
    runners["naive"] = lambda: naive_train_step(naive, *data, *opt_naive, weights, T)
    models = {"naive": naive}
    if args.control:
        control = copy.deepcopy(naive)
        opt_control = optimisers(control)
    for name in names:
        channels_last, dtype, _ = VARIANTS[name]
        model = copy.deepcopy(base)
        train_mode_without_dropout(model)
        batch = data
        if channels_last:
            model.to(memory_format=torch.channels_last)
            batch = to_channels_last(data)
        opts = optimisers(model)
        models[name] = model
        runners[name] = lambda m=model, x=batch, o=opts, d=dtype: feedback_train_step(
            m, *x, *o, seg_loss, iterations=T, autocast_dtype=d
        )

    # the feedback signals of the first (warm-up) step, which every method starts from the
    # same weights
    recorders = {name: DeltaRecorder(m.restorer) for name, m in models.items()}
    if args.control:
        recorders[CONTROL] = DeltaRecorder(control.restorer)

    # --- interleaved steps: warm-up + N timed, same batch each time; the order rotates so that
    # a slow drift of the machine's load does not favour one method.
    order = list(runners)
    wall = {k: [] for k in order}
    cpu = {k: [] for k in order}
    losses: list[dict[str, dict[str, float]]] = []
    for step in range(args.steps + 1):
        shift = step % len(order)
        row = {}
        for name in order[shift:] + order[:shift]:
            recorders[name].active = step == 0
            dt, ct, out = _timed(runners[name])
            recorders[name].active = False
            row[name] = out
            if step > 0:
                wall[name].append(dt)
                cpu[name].append(ct)
        losses.append(row)
        tag = "warm-up" if step == 0 else f"step {step}"
        print(
            f"{tag:8} "
            + "  ".join(f"{k} {row[k]['loss_seg']:.6f}" for k in order)
            + ("" if step == 0 else "  |  " + "  ".join(f"{k} {wall[k][-1]:.2f} s" for k in order)),
            flush=True,
        )

    if args.control:
        # the naive loop again, untimed, on one thread: the same math in another float32
        # summation order, the yardstick for "equal up to rounding"
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        for step, row in enumerate(losses):
            recorders[CONTROL].active = step == 0
            row[CONTROL] = naive_train_step(control, *data, *opt_control, weights, T)
            recorders[CONTROL].active = False
        torch.set_num_threads(threads)
        models[CONTROL] = control
        print(f"control  {CONTROL} " + "  ".join(f"{r[CONTROL]['loss_seg']:.6f}" for r in losses))

    def rel_loss_diff(name: str, rows: list[dict[str, dict[str, float]]]) -> float:
        return max(
            abs(r[name][k] - r["naive"][k]) / max(abs(r["naive"][k]), 1e-12)
            for r in rows
            for k in r["naive"]
        )

    compared = [n for n in models if n != "naive"]
    bn_diffs = {name: bn_stats_max_diff(models[name], naive) for name in compared}
    reference = recorders["naive"].deltas
    signals = {
        name: [
            {"t": t + 1, "rms": rms(d), "rms_diff_vs_naive": rms(d - ref)}
            for t, (d, ref) in enumerate(zip(rec.deltas, reference, strict=True))
            if t > 0  # t = 1: delta is exactly zero in every form
        ]
        for name, rec in recorders.items()
    }

    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    timed = set(names)
    summary = {
        name: {
            "description": VARIANTS[name][2] if name in VARIANTS else CONTROL_DESCRIPTION,
            "seconds_median": med.get(name),
            "speedup_naive_over_this": med["naive"] / med[name] if name in timed else None,
            "cpu_seconds_median": med_cpu.get(name),
            "cpu_speedup_naive_over_this": med_cpu["naive"] / med_cpu[name]
            if name in timed
            else None,
            "first_step_rel_loss_diff_vs_naive": rel_loss_diff(name, losses[:1]),
            "max_rel_loss_diff_vs_naive": rel_loss_diff(name, losses),
            "max_abs_param_diff_vs_naive": params_max_diff(models[name], naive),
            "max_rel_bn_running_stat_diff_vs_naive": bn_diffs[name][0],
            "bn_buffer_of_max_diff": bn_diffs[name][1],
            "forward_rel_error_vs_float64": fwd_errors.get(name),
        }
        for name in compared
    }

    def fwd(name: str) -> str:
        e = fwd_errors.get(name)
        return "-" if e is None else f"{e['restored']:.1e} / {e['logits']:.1e}"

    print()
    print(
        f"feedback train step  batch {b}  {h}x{w}  T={T}  "
        f"{'small (base width 8)' if args.small else 'full width (base 64)'}  "
        f"threads {torch.get_num_threads()}  torch {torch.__version__}  "
        f"{platform.processor() or platform.machine()}  (median of {args.steps})"
    )
    head = ("method", "wall [s]", "naive/this", "CPU [s]", "fwd err R / S vs fp64",
            "loss diff step 1", "loss diff max", "|param diff|", "BN stat rel diff")  # fmt: skip
    rows = [("naive literal loop (SPEC 2.4), fp32 NCHW", f"{med['naive']:.3f}", "1.000",
             f"{med_cpu['naive']:.3f}", fwd("naive"), "-", "-", "-", "-")]  # fmt: skip
    for name, r in summary.items():
        speedup = r["speedup_naive_over_this"]
        rows.append((
            r["description"], "-" if speedup is None else f"{r['seconds_median']:.3f}",
            "-" if speedup is None else f"{speedup:.3f}",
            "-" if speedup is None else f"{r['cpu_seconds_median']:.3f}", fwd(name),
            f"{r['first_step_rel_loss_diff_vs_naive']:.1e}",
            f"{r['max_rel_loss_diff_vs_naive']:.1e}",
            f"{r['max_abs_param_diff_vs_naive']:.1e}",
            f"{r['max_rel_bn_running_stat_diff_vs_naive']:.1e}",
        ))  # fmt: skip
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    fmt = "| " + " | ".join(f"{{:<{widths[0]}}}" if i == 0 else f"{{:>{wd}}}"
                            for i, wd in enumerate(widths)) + " |"  # fmt: skip
    print(fmt.format(*head))
    print("|" + "|".join("-" * (wd + 2) for wd in widths) + "|")
    for row in rows:
        print(fmt.format(*row))
    print(
        "(fwd err: max relative error of R's restored image / S's logits against the same"
        " train-mode forward in float64; loss diffs: max relative difference of loss_seg,"
        " loss_l1, loss_l1_last from the naive loop's, at the first step and over all steps;"
        " BN: the worst buffer, relative to its largest entry)"
    )
    print()
    print(
        "feedback signal delta_t = logits(t-1) - logits(t-2) that R receives, first step "
        "(same weights everywhere): rms, and rms of its difference from the naive loop's"
    )
    for name, rows_t in signals.items():
        cells = "  ".join(
            f"t={r['t']}: {r['rms']:.2e} (diff {r['rms_diff_vs_naive']:.2e})" for r in rows_t
        )
        print(f"  {name:24} {cells}")
    print(
        "  rounding noise of S's logits (rms error of one train-mode forward against float64; "
        f"logits rms {fwd_errors['naive']['logits_rms']:.2e}): "
        + ", ".join(f"{k} {v['logits_rms_error']:.2e}" for k, v in fwd_errors.items())
    )
    print()
    facts = [
        ("goal (issue 4): naive/ours >= 2 at equal outputs", ""),
        ("ceiling of skipping the pre-loop passes outright (MACs)", f"{ceiling:.3f}"),
        ("R params (with feedback block) [M]", f"{r_params / 1e6:.3f}"),
        ("  of which feedback block", f"{fb_params:,}"),
        ("S params (ERFNet) [M]", f"{s_params / 1e6:.3f}"),
        (f"R MACs / image, no feedback [G] @ {h}x{w}", f"{r_macs / 1e9:.2f}"),
        (f"R MACs / image, with feedback [G] @ {h}x{w}", f"{r_fb_macs / 1e9:.2f}"),
        (f"S MACs / image [G] @ {h}x{w}", f"{s_macs / 1e9:.2f}"),
    ]
    width = max(len(k) for k, _ in facts)
    for k, v in facts:
        print(f"  {k:<{width}}  {v}")

    result = {
        "config": {
            "batch": b,
            "height": h,
            "width": w,
            "iterations": T,
            "small": args.small,
            "restorer_base_width": 8 if args.small else 64,
            "num_classes": NUM_CLASSES,
            "steps": args.steps,
            "seed": args.seed,
            "dropout": "disabled (eval mode)",
            "loss": "CB-iFL, BMVC2020_CLASS_WEIGHTS[:19], gammas 0, 0.1, 0.2",
        },
        "naive": {
            "seconds_median": med["naive"],
            "cpu_seconds_median": med_cpu["naive"],
            "forward_rel_error_vs_float64": fwd_errors["naive"],
        },
        "variants": summary,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "losses": losses,
        "forward_errors_vs_float64": fwd_errors,
        "feedback_signal_first_step": signals,
        "pass_elimination_ceiling": ceiling,
        "load_average_1min_at_end": os.getloadavg()[0],
        "params": {"restorer": r_params, "feedback_block": fb_params, "segmenter": s_params},
        "macs_per_image": {
            "restorer_no_feedback": r_macs,
            "restorer_with_feedback": r_fb_macs,
            "segmenter": s_macs,
        },
        "cpu_flags": _cpu_flags(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")

    if args.profile:
        prof_name = names[0] if names else "ours-nchw"
        model = models.get(prof_name, base)
        batch = to_channels_last(data) if VARIANTS[prof_name][0] else data
        print(profile_fast_step(model, batch, *optimisers(model), seg_loss, T))


def _cpu_flags() -> list[str]:
    """The CPU features that decide the bf16 row: AMX / AVX-512 BF16 (Linux only)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    wanted = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")
    flags = set(next((ln for ln in text.splitlines() if ln.startswith("flags")), "").split())
    return [f for f in wanted if f in flags]


if __name__ == "__main__":
    main()
