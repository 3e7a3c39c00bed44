"""Online turbulence (turbsim.augment) against the numpy path: throughput, and the stored-size
approximation's error against ``turbsim generate --size``.

Throughput: fields + warp (+ blur) per second of uint8 RGB frames at 256x512, 512x1024 and
1024x2048 for batches of 1, 8 and 32, with the bmvc2020 air (per-field normalisation; "blur"
rows add the mean short-exposure blur of the same air). numpy path: per frame
``sample_tilt_field`` + ``warp_image`` (+ ``blur_image``), what a DataLoader worker would run;
torch: ``RandomTurbulence(...)(batch, generator)``, batched, on ``--device``. Both after a
warm-up (filters and correlation tables cached). Medians of ``--repeats`` runs, one run of the
script; the ratio is torch frames/s over numpy frames/s.

Accuracy (``--accuracy``): built-in synthetic scenes at 1024x2048 are generated with
``turbsim generate`` (bmvc2020 air, tilt only and with blur) stored at 224x448 and 256x512. For
every stored sample the exact native field of that sample is recomputed
(``turbsim.pipeline.render.sample_field``) and applied the online way (area-averaged field on the
stored clean image, blur in stored pixels: the approximation of
``RandomTurbulence(native_size=...)``); the table gives the PSNR of that against the stored
distorted image, next to the PSNR of the stored distorted image against the clean one (how large the
distortion is) and of an independent online draw (what a different field gives). Field statistics at
the stored size: std and lag-1 correlation of fresh torch fields against the numpy fields
area-averaged.

Usage: python benchmarks/bench_augment.py [--device cpu|cuda] [--accuracy] [--quick]
Prints tables and writes JSON (default benchmarks/results/augment[_cuda].json). Never a test.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from turbsim import blur_image, sample_tilt_field, warp_image
from turbsim.augment import RandomTurbulence, area_resize_fields, blur_images, warp
from turbsim.physics.threads import get_num_threads
from turbsim.pipeline.recipe import resolve_recipe

SIZES = ((256, 512), (512, 1024), (1024, 2048))
BATCHES = (1, 8, 32)


def _median(fn: Any, repeats: int, sync: Any = lambda: None) -> float:
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def numpy_frames_per_s(size: tuple[int, int], blur: bool, frames: int, repeats: int) -> float:
    """Frames per second of the numpy path, one frame at a time (median over repeats)."""
    recipe = resolve_recipe("bmvc2020", {"blur": "short-exposure" if blur else "none"})
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)

    def run() -> None:
        for _ in range(frames):
            params = recipe.sample_params(rng)
            field = sample_tilt_field(params, size, rng, recipe.normalize)
            out = warp_image(image, field, recipe.border)
            if blur:
                blur_image(out, params)

    run()  # warm-up: filter, table, JIT
    return frames / _median(run, repeats)


def torch_frames_per_s(
    size: tuple[int, int], batch: int, blur: bool, device: torch.device, repeats: int
) -> float:
    """Frames per second of RandomTurbulence on a batch (median over repeats)."""
    recipe = resolve_recipe("bmvc2020", {"blur": "short-exposure" if blur else "none"})
    module = RandomTurbulence(recipe)
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, *size), dtype=torch.uint8, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    module(images, generator)  # warm-up
    return batch / _median(lambda: module(images, generator), repeats, sync)


def throughput(device: torch.device, sizes: Any, batches: Any, repeats: int) -> list[dict]:
    rows = []
    for size in sizes:
        for blur in (False, True):
            frames = max(2, min(8, int(2**21 // (size[0] * size[1]) * 4)))
            ref = numpy_frames_per_s(size, blur, frames, repeats)
            for batch in batches:
                ours = torch_frames_per_s(size, batch, blur, device, repeats)
                rows.append({"size": list(size), "batch": batch, "blur": blur,
                             "numpy_frames_per_s": ref, "torch_frames_per_s": ours,
                             "ratio": ours / ref})  # fmt: skip
                print(
                    f"  {size[0]}x{size[1]} batch {batch:2d} blur {blur!s:5}: numpy "
                    f"{ref:8.2f}/s  torch {ours:8.2f}/s  ({ours / ref:.2f}x)",
                    flush=True,
                )
    return rows


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / mse) if mse > 0 else float("inf")


def _online(clean: np.ndarray, native_field: np.ndarray, params: Any, recipe: Any) -> np.ndarray:
    """The approximation of RandomTurbulence(native_size) with a given native field."""
    stored = clean.shape[:2]
    images = torch.from_numpy(clean).permute(2, 0, 1)[None]
    flow = area_resize_fields(torch.from_numpy(native_field)[None], stored)
    out = warp(images, flow, recipe.border)
    if recipe.blur != "none":
        n = native_field.shape[1:]
        out = blur_images(out, params, (stored[0] / n[0], stored[1] / n[1]))
    return out[0].permute(1, 2, 0).numpy()


def accuracy(images: int, native: tuple[int, int], stored_sizes: Any) -> list[dict]:
    """PSNR of the online approximation against turbsim generate --size (see the docstring)."""
    from turbsim.pipeline.generate import generate
    from turbsim.pipeline.plan import make_plan
    from turbsim.pipeline.render import sample_field
    from turbsim.shards import ShardReader
    from turbsim.sources.synthetic import write_sample_tree

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_sample_tree(root / "cs", images, native[0], native[1], seed=0, splits=("val",))
        for blur in ("none", "short-exposure"):
            for stored in stored_sizes:
                recipe = resolve_recipe(
                    "bmvc2020", {"blur": blur, "splits": "val", "size": f"{stored[0]}x{stored[1]}"}
                )
                out = root / f"shards-{blur}-{stored[0]}"
                generate(make_plan(root / "cs", recipe), out, workers=1)
                psnr_online, psnr_clean, psnr_other = [], [], []
                rng = torch.Generator().manual_seed(1)
                module = RandomTurbulence(recipe, native_size=native)
                for shard in sorted((out / "val").glob("shard-*.h5")):
                    with ShardReader(shard) as reader:
                        for item in reader:
                            field, params = sample_field(recipe, "val", item["name"],
                                                         item["variant"], native)  # fmt: skip
                            online = _online(item["clean"], field, params, recipe)
                            other, _ = module(
                                torch.from_numpy(item["clean"]).permute(2, 0, 1)[None], rng
                            )
                            other = other[0].permute(1, 2, 0).numpy()
                            psnr_online.append(_psnr(online, item["distorted"]))
                            psnr_clean.append(_psnr(item["clean"], item["distorted"]))
                            psnr_other.append(_psnr(other, item["distorted"]))
                row = {"blur": blur, "native": list(native), "stored": list(stored),
                       "images": len(psnr_online),
                       "psnr_online_vs_generate_db": statistics.median(psnr_online),
                       "psnr_online_vs_generate_min_db": min(psnr_online),
                       "psnr_clean_vs_generate_db": statistics.median(psnr_clean),
                       "psnr_other_draw_vs_generate_db": statistics.median(psnr_other)}  # fmt: skip
                rows.append(row)
                print(
                    f"  {blur:14} {native[0]}x{native[1]} -> {stored[0]}x{stored[1]}: same "
                    f"field {row['psnr_online_vs_generate_db']:.2f} dB (min "
                    f"{row['psnr_online_vs_generate_min_db']:.2f}), clean "
                    f"{row['psnr_clean_vs_generate_db']:.2f} dB, other field "
                    f"{row['psnr_other_draw_vs_generate_db']:.2f} dB",
                    flush=True,
                )
    return rows


def field_statistics(native: tuple[int, int], stored: tuple[int, int], fields: int) -> dict:
    """Std and lag-1 correlation at the stored size: fresh torch fields vs numpy fields."""
    recipe = resolve_recipe("bmvc2020")
    module = RandomTurbulence(recipe, native_size=native)
    ours, _ = module.sample_fields(fields, stored, torch.Generator().manual_seed(2))
    rng = np.random.default_rng(2)
    theirs = np.stack([
        area_resize_fields(torch.from_numpy(
            sample_tilt_field(recipe.sample_params(rng), native, rng, recipe.normalize)
        )[None], stored)[0].numpy() for _ in range(fields)
    ])  # fmt: skip

    def stats(f: np.ndarray) -> dict[str, float]:
        f = f.astype(np.float64)
        std = float(np.sqrt((f**2).mean()))
        lag = float((f[..., :, 1:] * f[..., :, :-1]).mean() / (f**2).mean())
        return {"std_px": std, "lag1_correlation_x": lag}

    return {"native": list(native), "stored": list(stored), "fields": fields,
            "torch": stats(ours.numpy()), "numpy": stats(theirs)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--accuracy", action="store_true", help="also the stored-size accuracy")
    ap.add_argument("--quick", action="store_true", help="256x512 and batch 1, 8 only")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    name = "augment.json" if device.type == "cpu" else f"augment_{device.type}.json"
    path = args.json or Path(__file__).parent / "results" / name
    sizes, batches = (SIZES[:1], BATCHES[:2]) if args.quick else (SIZES, BATCHES)
    result: dict[str, Any] = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "threads": {"torch": torch.get_num_threads(), "turbsim": get_num_threads()},
        "torch": torch.__version__,
        "python": platform.python_version(),
        "recipe": "bmvc2020",
        "repeats": args.repeats,
    }
    print(f"throughput on {device} (torch {torch.get_num_threads()} threads, numpy path "
          f"{get_num_threads()} threads):")  # fmt: skip
    result["throughput"] = throughput(device, sizes, batches, args.repeats)
    if args.accuracy:
        print("stored-size approximation against turbsim generate (per-image PSNR, medians):")
        result["accuracy"] = accuracy(8, (1024, 2048), ((224, 448), (256, 512)))
        result["field_statistics"] = field_statistics((1024, 2048), (224, 448), 16)
        print(f"  field statistics at 224x448: {result['field_statistics']}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
