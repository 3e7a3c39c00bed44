"""What the blur costs: `turbsim.blur_image` per 2048x1024 RGB frame, and `turbsim generate`
with `--blur short-exposure` against the same run without it (SPEC-turbsim section 8, item 5).

Goals: the blur adds <= 0.1 s per 2048x1024 RGB frame on 2 cores, and generation with blur stays
<= 1.3x the same run without it. Marginal seconds per frame of `turbsim generate` come from runs
of N and 2N images (the difference removes start-up: imports, JIT, the correlation table), each
in a fresh subprocess, in the order off, on, off, on (medians of the repeats).

Usage: python benchmarks/bench_blur.py [--images 6] [--repeats 5] [--threads 2]
Prints a table and writes JSON (default benchmarks/results/blur.json). Never run as a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STRENGTHS = {"weak": 1e-13, "moderate": 3e-13, "strong": 1e-12}


def _blur_times(repeats: int, threads: int) -> list[dict]:
    from turbsim.physics import blur
    from turbsim.physics.params import REFERENCE_PARAMS
    from turbsim.physics.threads import set_num_threads

    set_num_threads(threads)
    image = np.random.default_rng(0).integers(0, 256, (1024, 2048, 3), dtype=np.uint8)
    rows = []
    for name, cn2 in STRENGTHS.items():
        params = REFERENCE_PARAMS.with_cn2(cn2)
        blur.blur_image(image, params)  # tables and transfer cached, as in a generate worker
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            blur.blur_image(image, params)
            times.append(time.perf_counter() - t0)
        rows.append(
            {
                "strength": name,
                "cn2": cn2,
                "fwhm_px": blur.blur_fwhm_px(params),
                "pad_px": blur.padding_px(params),
                "median_s": statistics.median(times),
                "min_s": min(times),
                "max_s": max(times),
            }
        )
    return rows


def _generate_seconds(cs: Path, out: Path, n_images: int, blur: str) -> float:
    cmd = [
        sys.executable, "-m", "turbsim_cli.turbsim_cmd", "generate", "--cityscapes", str(cs),
        "--out", str(out), "--recipe", "bmvc2020", "--splits", "train", "--quiet",
        "--overwrite", "--blur", blur, "--shard-size", str(n_images),
    ]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _tree(root: Path, n: int) -> Path:
    cmd = [
        sys.executable, "-m", "turbsim_cli.turbsim_cmd", "sample-cityscapes", str(root),
        "--n", str(n),
        "--height", "1024", "--width", "2048", "--splits", "train", "--seed", "3", "--overwrite",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6, help="N (runs use N and 2N images)")
    parser.add_argument("--repeats", type=int, default=5, help="timed blur calls per strength")
    parser.add_argument("--generate-repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results/blur.json")
    args = parser.parse_args()

    blur_rows = _blur_times(args.repeats, args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-blur-"))
    try:
        small = _tree(work / "cs_n", args.images)
        large = _tree(work / "cs_2n", 2 * args.images)
        marginal: dict[str, list[float]] = {"none": [], "short-exposure": []}
        for _ in range(args.generate_repeats):
            for blur in ("none", "short-exposure"):
                t_n = _generate_seconds(small, work / "out", args.images, blur)
                t_2n = _generate_seconds(large, work / "out", 2 * args.images, blur)
                marginal[blur].append((t_2n - t_n) / args.images)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per_frame = {k: statistics.median(v) for k, v in marginal.items()}
    ratio = per_frame["short-exposure"] / per_frame["none"]
    paired = [b / a for a, b in zip(marginal["none"], marginal["short-exposure"], strict=True)]

    print(f"blur_image, 2048x1024 RGB uint8, {args.threads} threads, median of {args.repeats}")
    header = ("strength", "FWHM px", "pad px", "median s", "min s", "max s")
    widths = (8, 7, 9, 7, 7)
    cells = [f"{h:>{w}}" for h, w in zip(header[1:], widths, strict=True)]
    print(f"{header[0]:<10} " + " ".join(cells))
    for r in blur_rows:
        print(
            f"{r['strength']:<10} {r['fwhm_px']:>8.2f} {r['pad_px']:>7d} {r['median_s']:>9.3f} "
            f"{r['min_s']:>7.3f} {r['max_s']:>7.3f}"
        )
    print(
        f"\nturbsim generate, bmvc2020 (strong), 2048x1024, 1 worker, marginal s/frame "
        f"(median of {args.generate_repeats}):"
    )
    print(f"  tilt only        {per_frame['none']:.3f} s")
    print(
        f"  tilt + blur      {per_frame['short-exposure']:.3f} s   ratio {ratio:.2f}x "
        f"(goal <= 1.3x; per pair: {', '.join(f'{r:.2f}' for r in paired)})"
    )
    result = {
        "blur_image": blur_rows,
        "generate_s_per_frame": per_frame,
        "generate_runs": marginal,
        "generate_ratio": ratio,
        "generate_ratio_per_pair": paired,
        "goals": {"blur_s_per_frame": 0.1, "generate_ratio": 1.3},
        "images_n": args.images,
        "threads": args.threads,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
    }  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
