"""One training step of the spatial-feedback method: ours against a literal transcription.

Times ``feedbackseg.models.feedback.feedback_train_step`` (the fast form) against
``naive_train_step`` below, a straight transcription of the original loop (SPEC 2.4, literally:
the pre-loop passes R(x), S(restored) run with autograd although their feedback signal at t = 1
is zero), with the same modules, the same initial weights (deep copy), Adam optimisers as in
SPEC 4 and the CB-iFL loss (BMVC 2020 weights, gammas 0, 0.1, 0.2). Batch 2, 224x448, T = 3, on
the CPU by default. Dropout is disabled (its modules are put in eval mode) so that the two
steps must give equal losses; BatchNorm stays in train mode, so running statistics differ (the
naive loop's pre-loop passes update them with grad enabled, the fast one's without: the same
values in exact arithmetic for T >= 2) and the max difference is printed.

Also reports parameters and multiply-accumulates (MACs, counted with forward hooks on Conv2d,
ConvTranspose2d and Linear, batch 1 at the benchmark resolution) of R and S.

Usage: python benchmarks/bench_feedback_step.py [--steps 3] [--small] [--threads N]
Prints a table and writes JSON (default benchmarks/results/feedback_step.json; with --small
feedback_step_small.json). Never run as a test.
"""

from __future__ import annotations

import argparse
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

from feedbackseg.flow import warp
from feedbackseg.losses import BMVC2020_CLASS_WEIGHTS, CBiFLLoss, cb_ifl, iteration_gammas
from feedbackseg.models import ERFNet, FeedbackSegmenter, Restorer, feedback_train_step

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
def bn_stats_max_diff(a: nn.Module, b: nn.Module) -> float:
    diffs = [
        float((x - y).abs().max())
        for (name, x), (_, y) in zip(a.named_buffers(), b.named_buffers(), strict=True)
        if name.endswith(("running_mean", "running_var"))
    ]
    return max(diffs) if diffs else 0.0


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


def profile_fast_step(model, batch, opt_r, opt_s, seg_loss, iterations, rows=15) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        feedback_train_step(model, *batch, opt_r, opt_s, seg_loss, iterations=iterations)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


# ----------------------------------------------------------------------------- main
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
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.json is None:
        name = "feedback_step_small.json" if args.small else "feedback_step.json"
        args.json = Path(__file__).parent / "results" / name
    b, h, w, T = args.batch, args.height, args.width, args.iterations

    fast = build(args.small, args.seed)
    naive = copy.deepcopy(fast)
    for m in (fast, naive):
        train_mode_without_dropout(m)
    opt_fast, opt_naive = optimisers(fast), optimisers(naive)
    weights = BMVC2020_CLASS_WEIGHTS[:NUM_CLASSES]
    seg_loss = CBiFLLoss(weights, gamma_step=0.1)  # seg_loss(logits, label, t): gamma (t-1)/10
    data = synthetic_batch(b, h, w, args.seed + 1)

    # --- sizes (eval mode, batch 1: hooks do not touch BN statistics)
    probe = copy.deepcopy(fast).eval()
    x1 = data[0][:1]
    zero_delta = torch.zeros(1, NUM_CLASSES, h, w)
    r_params = count_params(probe.restorer)
    fb_params = count_params(probe.restorer.trans_block)
    s_params = count_params(probe.segmenter)
    r_macs = count_macs(probe.restorer, x1)
    r_fb_macs = count_macs(probe.restorer, x1, zero_delta, torch.zeros_like(x1))
    s_macs = count_macs(probe.segmenter, x1)
    del probe

    # --- interleaved steps: warm-up + N timed, same batch each time; the order alternates so
    # that a slow drift of the machine's load does not favour one method.
    def run_fast():
        return feedback_train_step(fast, *data, *opt_fast, seg_loss, iterations=T)

    def run_naive():
        return naive_train_step(naive, *data, *opt_naive, weights, T)

    t_fast, t_naive, cpu_fast, cpu_naive, loss_diffs, rows_losses = [], [], [], [], [], []
    for step in range(args.steps + 1):
        if step % 2 == 0:
            dt_f, ct_f, lf = _timed(run_fast)
            dt_n, ct_n, ln = _timed(run_naive)
        else:
            dt_n, ct_n, ln = _timed(run_naive)
            dt_f, ct_f, lf = _timed(run_fast)
        diff = max(abs(lf[k] - ln[k]) / max(abs(ln[k]), 1e-12) for k in ln)
        rows_losses.append({"fast": lf, "naive": ln})
        loss_diffs.append(diff)
        tag = "warm-up" if step == 0 else f"step {step}"
        print(
            f"{tag:8} fast {dt_f:8.3f} s (cpu {ct_f:8.3f})  naive {dt_n:8.3f} s (cpu {ct_n:8.3f})"
            f"  loss_seg {lf['loss_seg']:.6f} / {ln['loss_seg']:.6f}"
            f"  l1 {lf['loss_l1']:.6f} / {ln['loss_l1']:.6f}  max rel diff {diff:.2e}",
            flush=True,
        )
        if step > 0:
            t_fast.append(dt_f)
            t_naive.append(dt_n)
            cpu_fast.append(ct_f)
            cpu_naive.append(ct_n)

    med_fast, med_naive = statistics.median(t_fast), statistics.median(t_naive)
    speedup = med_naive / med_fast
    cpu_speedup = statistics.median(cpu_naive) / statistics.median(cpu_fast)
    bn_diff = bn_stats_max_diff(fast, naive)
    par_diff = params_max_diff(fast, naive)

    print()
    print(
        f"feedback train step  batch {b}  {h}x{w}  T={T}  "
        f"{'small (base width 8)' if args.small else 'full width (base 64)'}  "
        f"threads {torch.get_num_threads()}  torch {torch.__version__}  "
        f"{platform.processor() or platform.machine()}  (median of {args.steps})"
    )
    table = [
        ("naive literal loop (SPEC 2.4) [s]", f"{med_naive:.3f}"),
        ("ours: feedback_train_step [s]", f"{med_fast:.3f}"),
        ("speed-up naive / ours (goal >= 2)", f"{speedup:.3f}"),
        ("naive, process CPU time [s]", f"{statistics.median(cpu_naive):.3f}"),
        ("ours, process CPU time [s]", f"{statistics.median(cpu_fast):.3f}"),
        ("speed-up in CPU time", f"{cpu_speedup:.3f}"),
        ("max rel. loss difference (all steps)", f"{max(loss_diffs):.2e}"),
        ("max |param diff| after all steps", f"{par_diff:.2e}"),
        ("max |BN running stat diff|", f"{bn_diff:.2e}"),
        ("R params (with feedback block) [M]", f"{r_params / 1e6:.3f}"),
        ("  of which feedback block", f"{fb_params:,}"),
        ("S params (ERFNet) [M]", f"{s_params / 1e6:.3f}"),
        (f"R MACs / image, no feedback [G] @ {h}x{w}", f"{r_macs / 1e9:.2f}"),
        (f"R MACs / image, with feedback [G] @ {h}x{w}", f"{r_fb_macs / 1e9:.2f}"),
        (f"S MACs / image [G] @ {h}x{w}", f"{s_macs / 1e9:.2f}"),
    ]
    width = max(len(k) for k, _ in table)
    print(f"| {'what':<{width}} | {'value':>10} |")
    print(f"|{'-' * (width + 2)}|{'-' * 12}|")
    for k, v in table:
        print(f"| {k:<{width}} | {v:>10} |")

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
        "seconds": {"naive_median": med_naive, "fast_median": med_fast},
        "naive_times": t_naive,
        "fast_times": t_fast,
        "speedup_naive_over_fast": speedup,
        "cpu_seconds": {"naive": cpu_naive, "fast": cpu_fast},
        "cpu_speedup_naive_over_fast": cpu_speedup,
        "load_average_1min_at_end": os.getloadavg()[0],
        "max_rel_loss_diff": max(loss_diffs),
        "losses": rows_losses,
        "max_abs_param_diff": par_diff,
        "max_abs_bn_running_stat_diff": bn_diff,
        "params": {"restorer": r_params, "feedback_block": fb_params, "segmenter": s_params},
        "macs_per_image": {
            "restorer_no_feedback": r_macs,
            "restorer_with_feedback": r_fb_macs,
            "segmenter": s_macs,
        },
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
        print(profile_fast_step(fast, data, *opt_fast, seg_loss, T))


if __name__ == "__main__":
    main()
