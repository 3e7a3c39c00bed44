"""Does the data loader starve the model? Loader throughput next to the training step time.

Makes its own shards in a temporary folder: a few synthetic Cityscapes-size scenes (1024x2048)
distorted by turbsim and stored with gzip (the portable codec; the slowest to read). Then

- loader: ``feedbackseg.data.dataset.ShardDataset`` resized to height 224 (224x448, the bmvc2020
  recipe) through the trainer's DataLoader settings (batch 2; 0 workers, and K workers started
  with forkserver, persistent), samples/s over a few epochs after the first batch;
- step: one optimiser step of each mode (``feedbackseg.models.TRAIN_STEPS``) at batch 2,
  224x448, the bmvc2020 losses (CB-iFL, T = 3), median over a few steps after a warm-up, with
  the narrow restorer (``--small``) and, with ``--full``, the original widths.

The ratio "loader samples/s / step samples/s" above 1 means the loader keeps up with a single
process on this machine (with K workers it runs in parallel with the step).

Usage: python benchmarks/bench_loader.py [--images 8] [--workers 2] [--steps 3] [--full]
    [--threads N]
Prints a table and writes benchmarks/results/loader.json. Never run as a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from feedbackseg.config import resolve_config
from feedbackseg.data.dataset import ShardDataset
from feedbackseg.models import TRAIN_STEPS, build_model
from feedbackseg.training.losses import BMVC2020_CLASS_WEIGHTS
from feedbackseg.training.train import _loader_kwargs, build_seg_loss
from turbsim.pipeline.generate import generate
from turbsim.pipeline.plan import make_plan
from turbsim.pipeline.recipe import resolve_recipe
from turbsim.sources.synthetic import write_sample_tree

HEIGHT = 224
BATCH = 2


def make_shards(folder: Path, images: int) -> tuple[Path, float]:
    """Synthetic 1024x2048 scenes -> gzip shards; returns (shard folder, seconds)."""
    src = folder / "cityscapes"
    write_sample_tree(src, n=images, height=1024, width=2048, seed=0, splits=("train",))
    recipe = resolve_recipe(
        None, {"compression": "gzip", "shard_size": 4, "splits": ["train"], "seed": 0}
    )
    out = folder / "shards"
    start = time.perf_counter()
    generate(make_plan(src, recipe), out, workers=1)
    return out, time.perf_counter() - start


def loader_rate(root: Path, workers: int, epochs: int) -> dict[str, float]:
    """Samples/s of the trainer's DataLoader (first batch, incl. worker start-up, excluded)."""
    config = resolve_config(root, "unused", overrides={"workers": workers, "device": "cpu"})
    dataset = ShardDataset(root, "train", height=HEIGHT)
    loader = DataLoader(
        dataset, batch_size=BATCH, shuffle=True, **_loader_kwargs(config, torch.device("cpu"))
    )
    start = time.perf_counter()
    first = None
    samples = 0
    for _ in range(epochs):
        for batch in loader:
            if first is None:
                first = time.perf_counter() - start
                start = time.perf_counter()
                continue
            samples += int(batch["distorted"].shape[0])
    elapsed = time.perf_counter() - start
    return {
        "samples_per_s": samples / elapsed,
        "first_batch_s": first or 0.0,
        "image_size": list(dataset.image_size),
    }


def step_time(mode: str, small: bool, steps: int) -> dict[str, float]:
    """Median seconds of one training step of ``mode`` at batch 2, 224x448, on the CPU."""
    torch.manual_seed(0)
    config = resolve_config("s", "r", overrides={"mode": mode, "small": small})
    model = build_model(mode, 19, small).train()
    x = torch.rand(BATCH, 3, HEIGHT, 2 * HEIGHT)
    clean = torch.rand_like(x)
    label = torch.randint(0, 19, (BATCH, HEIGHT, 2 * HEIGHT))
    if mode == "erfnet":
        opt_r, opt_s, clean = None, torch.optim.Adam(model.parameters(), 5e-4), None
    else:
        opt_r = torch.optim.Adam(model.restorer.parameters(), 2e-4)
        opt_s = torch.optim.Adam(model.segmenter.parameters(), 5e-4)
    loss = build_seg_loss(config, BMVC2020_CLASS_WEIGHTS[:19])
    kwargs = {"iterations": 3} if mode == "feedback" else {}
    times = []
    for _ in range(steps + 1):  # the first is a warm-up
        start = time.perf_counter()
        TRAIN_STEPS[mode](model, x, clean, label, opt_r, opt_s, loss, **kwargs)
        times.append(time.perf_counter() - start)
    median = statistics.median(times[1:])
    return {"step_s": median, "samples_per_s": BATCH / median, "times": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=8, help="1024x2048 scenes to generate")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="loader passes over the images")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per mode")
    parser.add_argument("--full", action="store_true", help="also the original restorer width")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the steps")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results/loader.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        root, gen_s = make_shards(Path(tmp), args.images)
        size_mb = sum(p.stat().st_size for p in root.rglob("*.h5")) / 1e6
        loaders = {
            0: loader_rate(root, 0, args.epochs),
            args.workers: loader_rate(root, args.workers, args.epochs),
        }
    steps = {}
    for small in [True, False] if args.full else [True]:
        for mode in ("erfnet", "restore-seg", "feedback"):
            if mode == "erfnet" and not small:
                continue  # ERFNet has one width
            name = mode if mode == "erfnet" else f"{mode}{' --small' if small else ' (full)'}"
            steps[name] = step_time(mode, small, args.steps)

    rows = [("loader, 0 workers", loaders[0]["samples_per_s"], None)]
    rows.append((f"loader, {args.workers} workers", loaders[args.workers]["samples_per_s"], None))
    for name, result in steps.items():
        rows.append((f"step {name}", result["samples_per_s"], result["step_s"]))
    worst_loader = loaders[args.workers]["samples_per_s"]
    print(
        f"\n{args.images} images 1024x2048 (gzip shards, {size_mb:.1f} MB, generated in "
        f"{gen_s:.1f} s) -> {HEIGHT}x{2 * HEIGHT}, batch {BATCH}, CPU, "
        f"{torch.get_num_threads()} torch threads, {os.cpu_count()} cores\n"
    )
    print(f"| {'what':<28} | samples/s | s/step | loader/step |")
    print(f"|{'-' * 30}|----------:|-------:|------------:|")
    for name, rate, seconds in rows:
        ratio = "" if seconds is None else f"{worst_loader / rate:.1f}x"
        sec = "" if seconds is None else f"{seconds:.3f}"
        print(f"| {name:<28} | {rate:9.2f} | {sec:>6} | {ratio:>11} |")
    print(
        f"\nfirst batch (incl. worker start-up): 0 workers {loaders[0]['first_batch_s']:.2f} s, "
        f"{args.workers} workers {loaders[args.workers]['first_batch_s']:.2f} s"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "config": {
            "images": args.images,
            "stored_size": [1024, 2048],
            "compression": "gzip",
            "train_size": [HEIGHT, 2 * HEIGHT],
            "batch": BATCH,
            "workers": args.workers,
            "epochs": args.epochs,
            "steps": args.steps,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "generate_s": gen_s,
        "shards_mb": size_mb,
        "loader": {str(k): v for k, v in loaders.items()},
        "steps": steps,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
