"""One prepared check of the CUDA paths (issue 12, item 4): run it whenever a GPU is at hand.

On a machine with CUDA (at most ~8 minutes on one GPU):
1. throughput: train steps of each mode (erfnet, restore-seg, feedback; full networks) at
   224x448 and 512x1024, batch 8, in float32, TF32, bf16 AMP and channels-last: images/s
   (after warm-up steps) and peak GPU memory;
2. equality: one training step's losses on CUDA float32 against the CPU float32 step from the
   same weights and batch;
3. DDP: `torchrun --nproc-per-node 1 --no-python fbseg train` with NCCL (world size 1);
4. the CPU study grid's modes at full network width for a few hundred steps (val mIoU, time);
5. online turbulence (turbsim.augment): fields + warps (+ blur) per second at 256x512,
   512x1024 and 1024x2048 for batch 1/8/32 (goal: >= 1000/s at 512x1024), the functional core
   on the device against the numpy path on the same inputs, and a few steps of
   `fbseg train --turbulence online`.
It makes its own synthetic data (`turbsim sample-cityscapes` + `turbsim generate`), writes one
JSON and a Markdown table, and prints the table.

Without CUDA (or with --dry) it runs a tiny dry form on the CPU (small networks, tiny images,
a few steps, gloo for DDP) that exercises every code path; tests/test_gpu_check.py runs it.

Usage: python benchmarks/gpu_check.py [--dry] [--out DIR]  (benchmarks/gpu_check.sh wraps it)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODES = ("erfnet", "restore-seg", "feedback")
PRECISIONS = {
    "float32": {},
    "tf32": {"tf32": True},
    "bf16-amp": {"amp": True},
    "channels-last": {"channels_last": True},
}


@dataclass(frozen=True)
class Plan:
    """Sizes of one run of the check (the GPU form or the dry CPU form)."""

    device: str
    native: tuple[int, int]  # synthetic scenes (H, W)
    images: int  # per split
    resolutions: tuple[int, ...]  # training heights of the throughput rows
    batch: int
    steps: int  # timed steps per throughput row (after warm-up)
    warmup: int
    grid_steps: int
    grid_height: int
    small: bool
    ddp_backend: str
    all_precisions: tuple[str, ...]  # modes timed in every precision (the rest: float32)
    equality_modes: tuple[str, ...]
    augment_sizes: tuple[tuple[int, int], ...] = ((256, 512), (512, 1024), (1024, 2048))
    augment_batches: tuple[int, ...] = (1, 8, 32)


GPU = Plan("cuda", (1024, 2048), 16, (224, 512), 8, 10, 3, 300, 256, False, "nccl", MODES, MODES)
DRY = Plan("cpu", (64, 128), 3, (32,), 2, 1, 1, 1, 32, True, "gloo", ("erfnet",), ("feedback",),
           ((32, 64),), (1, 2))  # fmt: skip


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def make_data(root: Path, plan: Plan) -> Path:
    """Synthetic scenes -> shards (bmvc2020 recipe, native size, with flow)."""
    cs, shards = root / "cityscapes", root / "shards"
    h, w = plan.native
    for cmd in (
        ["turbsim", "sample-cityscapes", str(cs), "--n", str(plan.images), "--height", str(h),
         "--width", str(w), "--seed", "0", "--overwrite"],
        ["turbsim", "generate", "--cityscapes", str(cs), "--out", str(shards), "--recipe",
         "bmvc2020", "--store-flow", "--quiet", "--overwrite", "--workers", "2"],
    ):  # fmt: skip
        result = _run(cmd)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[:2])} failed: {result.stderr.strip()}")
    return shards


def _config(shards: Path, out: Path, plan: Plan, **overrides: Any) -> Any:
    from feedbackseg.config import TrainConfig

    base = {
        "shards": str(shards), "out": str(out), "batch_size": plan.batch, "workers": 0,
        "device": plan.device, "small": plan.small, "iterations": 3, "val_split": None,
        "log_every": 1, "checkpoint_every": 10**9, "overwrite": True, "seed": 0,
        "class_weights": "bmvc2020",
    }  # fmt: skip
    base.update(overrides)
    return TrainConfig(**base)


def _metrics(run: Path) -> list[dict[str, Any]]:
    from feedbackseg.runs.rundir import read_metrics

    return [r for r in read_metrics(run) if r.get("kind") == "train"]


def throughput(shards: Path, work: Path, plan: Plan) -> list[dict[str, Any]]:
    """images/s and peak memory of each mode x resolution x precision."""
    import torch

    from feedbackseg.training.train import train

    rows = []
    for height in plan.resolutions:
        for mode in MODES:
            for name, flags in PRECISIONS.items():
                if name != "float32" and mode not in plan.all_precisions:
                    continue
                run = work / f"tp-{mode}-{height}-{name}"
                if plan.device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                config = _config(shards, run, plan, mode=mode, height=height,
                                 max_steps=plan.warmup + plan.steps, **flags)  # fmt: skip
                row: dict[str, Any] = {"mode": mode, "height": height, "precision": name}
                try:
                    t0 = time.perf_counter()
                    train(config, log=lambda _m: None)
                    row["wall_s"] = time.perf_counter() - t0
                    timed = _metrics(run)[plan.warmup :]
                    rates = [r["samples_per_s"] for r in timed if "samples_per_s" in r]
                    row["images_per_s"] = sum(rates) / len(rates) if rates else None
                    row["peak_mib"] = (
                        torch.cuda.max_memory_allocated() / 2**20 if plan.device == "cuda" else None
                    )
                    row["ok"] = True
                except Exception as error:  # a row that fails is a result, not the end
                    row.update(ok=False, error=f"{type(error).__name__}: {error}"[:300])
                rows.append(row)
                shutil.rmtree(run, ignore_errors=True)
    return rows


def one_step_equality(shards: Path, work: Path, plan: Plan) -> list[dict[str, Any]]:
    """One step's losses on ``plan.device`` float32 against the CPU float32 step."""
    from feedbackseg.training.train import train

    rows = []
    for mode in plan.equality_modes:
        losses = {}
        for device in ("cpu", plan.device):
            run = work / f"eq-{mode}-{device}"
            train(_config(shards, run, plan, mode=mode, device=device, height=plan.resolutions[0],
                          max_steps=1), log=lambda _m: None)  # fmt: skip
            losses[device] = _metrics(run)[0]
            shutil.rmtree(run, ignore_errors=True)
        row = {"mode": mode}
        for key in ("loss_seg", "loss_l1"):
            a, b = losses["cpu"].get(key), losses[plan.device].get(key)
            row[f"{key}_cpu"], row[f"{key}_{plan.device}"] = a, b
            row[f"{key}_rel_diff"] = abs(a - b) / max(abs(a), 1e-12) if a is not None else None
        rows.append(row)
    return rows


def ddp_check(shards: Path, work: Path, plan: Plan) -> dict[str, Any]:
    """torchrun, world size 1, with the plan's backend (NCCL on CUDA, gloo on the CPU)."""
    run = work / "ddp"
    cmd = [
        "torchrun", "--nproc-per-node", "1", "--no-python", "fbseg", "train", str(shards),
        "--out", str(run), "--mode", "feedback", "--max-steps", "3", "--batch-size",
        str(plan.batch), "--height", str(plan.resolutions[0]), "--workers", "0", "--device",
        plan.device, "--log-every", "1", "--overwrite", *(["--small"] if plan.small else []),
    ]  # fmt: skip
    env = {**os.environ, "TORCH_DISTRIBUTED_DEBUG": "OFF"}
    t0 = time.perf_counter()
    result = _run(cmd, env=env, timeout=600)
    record = {"backend": plan.ddp_backend, "returncode": result.returncode,
              "wall_s": time.perf_counter() - t0}  # fmt: skip
    if result.returncode == 0:
        record["steps_logged"] = len(_metrics(run))
    else:
        record["stderr_tail"] = result.stderr[-500:]
    return record


def grid(shards: Path, work: Path, plan: Plan) -> list[dict[str, Any]]:
    """The study grid's modes at full width (small in the dry form) for grid_steps steps."""
    from feedbackseg.training.train import train

    rows = []
    for cell, mode in (("erfnet", "erfnet"), ("restore-seg", "restore-seg"),
                       ("feedback", "feedback")):  # fmt: skip
        run = work / f"grid-{cell}"
        t0 = time.perf_counter()
        result = train(_config(shards, run, plan, mode=mode, height=plan.grid_height,
                               max_steps=plan.grid_steps, val_split="val",
                               val_every=plan.grid_steps, log_every=10),
                       log=lambda _m: None)  # fmt: skip
        rows.append({"cell": cell, "steps": result.step, "best_miou": result.best_miou,
                     "wall_s": time.perf_counter() - t0})  # fmt: skip
        shutil.rmtree(run, ignore_errors=True)
    return rows


def augment_check(shards: Path, work: Path, plan: Plan) -> dict[str, Any]:
    """turbsim.augment on the plan's device: throughput, equality with numpy, online training."""
    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_augment import torch_frames_per_s

    from feedbackseg.training.train import train
    from turbsim import TurbulenceParams, augment, blur_image, warp_image
    from turbsim.physics.field import draw_noise, render_unit_field, spectral_filter

    device = torch.device(plan.device)
    rows = []
    for size in plan.augment_sizes:
        for blur in (False, True):
            for batch in plan.augment_batches:
                row: dict[str, Any] = {"size": list(size), "batch": batch, "blur": blur}
                try:
                    row["frames_per_s"] = torch_frames_per_s(size, batch, blur, device, 3)
                    row["ok"] = True
                except Exception as error:  # a failing row is a result
                    row.update(ok=False, error=f"{type(error).__name__}: {error}"[:300])
                rows.append(row)
    params = TurbulenceParams(cn2=1e-12, path_length_m=2000.0, aperture_m=0.3 / 5.6)
    rng = np.random.default_rng(0)
    shape = (48, 80)
    filt = spectral_filter(params, shape)
    noise = np.stack([draw_noise(rng, shape) for _ in range(2)])
    want = np.stack([render_unit_field(filt, z) for z in noise])
    got = augment.render_unit_fields(filt, torch.from_numpy(noise).to(device)).cpu().numpy()
    image = rng.integers(0, 256, (2, *shape, 3), dtype=np.uint8)
    flow = (rng.standard_normal((2, 2, *shape)) * 4).astype(np.float32)
    nchw = torch.from_numpy(image).permute(0, 3, 1, 2).to(device)
    warped = augment.warp(nchw, torch.from_numpy(flow).to(device)).permute(0, 2, 3, 1).cpu()
    blurred = augment.blur_images(nchw, params).permute(0, 2, 3, 1).cpu()
    equality = {
        "field_max_abs_diff": float(np.abs(got - want).max()),
        "warp_uint8_max_diff": int(np.abs(warped.numpy().astype(int) - np.stack(
            [warp_image(image[i], flow[i]) for i in range(2)]).astype(int)).max()),
        "blur_uint8_max_diff": int(np.abs(blurred.numpy().astype(int) - np.stack(
            [blur_image(image[i], params) for i in range(2)]).astype(int)).max()),
    }  # fmt: skip
    run = work / "online"
    t0 = time.perf_counter()
    result = train(_config(shards, run, plan, mode="feedback", height=plan.grid_height,
                           max_steps=3, turbulence="online"), log=lambda _m: None)  # fmt: skip
    online = {"steps": result.step, "wall_s": time.perf_counter() - t0}
    shutil.rmtree(run, ignore_errors=True)
    return {"throughput": rows, "equality": equality, "online_training": online}


def markdown(result: dict[str, Any]) -> str:
    """The check as Markdown tables."""
    lines = [
        f"# GPU check ({result['form']} form, device {result['device']})",
        "",
        "| mode | height | precision | images/s | peak MiB | ok |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["throughput"]:
        ips = f"{r['images_per_s']:.2f}" if r.get("images_per_s") else "-"
        mib = f"{r['peak_mib']:.0f}" if r.get("peak_mib") else "-"
        lines.append(f"| {r['mode']} | {r['height']} | {r['precision']} | {ips} | {mib} | "
                     f"{'yes' if r['ok'] else r.get('error', 'no')} |")  # fmt: skip
    device = result["device"]
    lines += ["", f"| mode | loss_seg cpu | loss_seg {device} | rel. diff |", "|---|---|---|---|"]
    for r in result["equality"]:
        lines.append(f"| {r['mode']} | {r['loss_seg_cpu']:.6f} | {r[f'loss_seg_{device}']:.6f} "
                     f"| {r['loss_seg_rel_diff']:.2e} |")  # fmt: skip
    d = result["ddp"]
    lines += ["", f"DDP ({d['backend']}, torchrun world size 1): return code {d['returncode']}, "
              f"{d.get('steps_logged', 0)} steps logged", "",
              "| cell | steps | best val mIoU | wall s |", "|---|---|---|---|"]  # fmt: skip
    for r in result["grid"]:
        miou = f"{100 * r['best_miou']:.2f} %" if r["best_miou"] is not None else "-"
        lines.append(f"| {r['cell']} | {r['steps']} | {miou} | {r['wall_s']:.1f} |")
    aug = result["augment"]
    lines += ["", "| augment size | batch | blur | frames/s | ok |", "|---|---|---|---|---|"]
    for r in aug["throughput"]:
        fps = f"{r['frames_per_s']:.1f}" if r.get("frames_per_s") else "-"
        lines.append(f"| {r['size'][0]}x{r['size'][1]} | {r['batch']} | {r['blur']} | {fps} | "
                     f"{'yes' if r['ok'] else r.get('error', 'no')} |")  # fmt: skip
    eq, on = aug["equality"], aug["online_training"]
    lines += ["", f"augment vs numpy on {device}: field max |diff| {eq['field_max_abs_diff']:.2e}, "
              f"warp uint8 max diff {eq['warp_uint8_max_diff']}, blur uint8 max diff "
              f"{eq['blur_uint8_max_diff']}; online training: {on['steps']} steps in "
              f"{on['wall_s']:.1f} s"]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="tiny CPU form (also without CUDA)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    import torch

    dry = args.dry or not torch.cuda.is_available()
    plan = DRY if dry else GPU
    work = args.out / ("gpu_check_work_dry" if dry else "gpu_check_work")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    try:
        shards = make_data(work, plan)
        result: dict[str, Any] = {
            "form": "dry" if dry else "gpu",
            "device": plan.device,
            "gpu": torch.cuda.get_device_name(0) if not dry else None,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "plan": {k: v for k, v in vars(plan).items()},
        }
        result["throughput"] = throughput(shards, work, plan)
        result["equality"] = one_step_equality(shards, work, plan)
        result["ddp"] = ddp_check(shards, work, plan)
        result["grid"] = grid(shards, work, plan)
        result["augment"] = augment_check(shards, work, plan)
        result["wall_s"] = time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
    name = "gpu_check_dry" if dry else "gpu_check"
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / f"{name}.md").write_text(table)
    print(table)
    print(f"wrote {args.out / (name + '.json')} and {name}.md in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
