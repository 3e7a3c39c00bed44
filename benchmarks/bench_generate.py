"""`turbsim generate` seconds per 2048x1024 frame against the floor of the same I/O.

Floor: what any pipeline must do anyway, with bare cv2 + h5py: decode the image and label PNGs,
convert BGR->RGB, map labelIds->trainIds, and write the same three arrays (distorted, clean,
label) with the same compression and chunking into one HDF5 file per shard. turbsim adds the
tilt field, the warp, the bookkeeping (seeds, sidecars, manifest).

Each configuration runs in a fresh subprocess so that its peak RSS (ru_maxrss of the children)
is its own; RSS is measured for N and 2N images to show it is flat in the number of images.

Usage: python benchmarks/bench_generate.py [--images 8] [--compression gzip]
Prints a table and writes JSON (default benchmarks/results/generate.json). Never run as a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_FLOOR = r"""
import sys, time, cv2, h5py, numpy as np
from pathlib import Path
from turbsim.sources.cityscapes import LABEL_ID_TO_TRAIN_ID
root, out, comp, shard = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
cv2.setNumThreads(1)
imgs = sorted((root / "leftImg8bit" / "train").rglob("*_leftImg8bit.png"))
kw = {"gzip": dict(compression="gzip", compression_opts=1), "lzf": dict(compression="lzf"),
      "none": {}}[comp]
t0 = time.perf_counter()
for k in range(0, len(imgs), shard):
    with h5py.File(out / f"floor-{k}.h5", "w") as f:
        batch = imgs[k:k + shard]
        h, w = cv2.imread(str(batch[0]), cv2.IMREAD_UNCHANGED).shape[:2]
        shape, chunk = (len(batch), h, w, 3), (1, h, w, 3)
        d = f.create_dataset("distorted", shape, np.uint8, chunks=chunk, **kw)
        c = f.create_dataset("clean", shape, np.uint8, chunks=chunk, **kw)
        lab = f.create_dataset("label", (len(batch), h, w), np.uint8, chunks=(1, h, w), **kw)
        for i, p in enumerate(batch):
            rgb = cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            lp = str(p).replace("leftImg8bit", "gtFine", 1)
            lp = lp.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
            label = LABEL_ID_TO_TRAIN_ID[cv2.imread(lp, cv2.IMREAD_UNCHANGED)]
            d[i] = rgb
            c[i] = rgb
            lab[i] = label
print(time.perf_counter() - t0)
"""


def _rss_child(cmd: list[str]) -> tuple[float, float, str]:
    wrapper = (
        "import resource, subprocess, sys, time, json; t=time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "w=time.perf_counter()-t; "
        "print(json.dumps([w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, check=True
    )
    wall, rss = json.loads(out.stdout.strip().splitlines()[-1])
    return wall, rss, ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8, help="train images (val gets a few more)")
    ap.add_argument("--compression", default="gzip", choices=["gzip", "lzf", "none"])
    ap.add_argument("--shard-size", type=int, default=4)
    ap.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "generate.json"
    )
    args = ap.parse_args()
    from turbsim.sources.synthetic import write_sample_tree

    work = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    try:
        trees = {}
        for n in (args.images, 2 * args.images):
            trees[n] = work / f"cs{n}"
            write_sample_tree(trees[n], n=n, height=1024, width=2048, seed=0, splits=("train",))
        # warm the correlation-table cache and the Numba cache once
        subprocess.run(
            [sys.executable, "-m", "turbsim_cli.turbsim_cmd", "params"],
            check=True,
            capture_output=True,
        )
        n = args.images

        def floor_run(images: int) -> tuple[float, float]:
            floor_out = work / f"floor-{images}"
            floor_out.mkdir()
            wall, rss, _ = _rss_child(
                [
                    sys.executable,
                    "-c",
                    _FLOOR,
                    str(trees[images]),
                    str(floor_out),
                    args.compression,
                    str(args.shard_size),
                ]
            )
            shutil.rmtree(floor_out)
            return wall, rss

        def run(workers: int, images: int) -> tuple[float, float]:
            out_dir = work / f"gen-{workers}-{images}"
            cmd = [
                sys.executable,
                "-m",
                "turbsim_cli.turbsim_cmd",
                "generate",
                "--cityscapes",
                str(trees[images]),
                "--out",
                str(out_dir),
                "--quiet",
                "--splits",
                "train",
                "--compression",
                args.compression,
                "--shard-size",
                str(args.shard_size),
                "--workers",
                str(workers),
            ]
            wall, rss, _ = _rss_child(cmd)
            shutil.rmtree(out_dir)
            return wall, rss

        rows = []
        for name, fn in (
            ("floor: decode + h5py write", floor_run),
            ("turbsim generate, 1 worker", lambda k: run(1, k)),
            ("turbsim generate, 2 workers", lambda k: run(2, k)),
        ):
            w_n, r_n = fn(n)
            w_2n, r_2n = fn(2 * n)
            marginal = (w_2n - w_n) / n  # fixed costs (start-up, JIT load, filter) cancel
            rows.append((name, w_n, w_2n, marginal, r_n, r_2n))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"2048x1024 frames, compression {args.compression}, shard size {args.shard_size}, "
        f"{os.cpu_count()} cores. s/frame = (wall(2N) - wall(N)) / N: start-up, JIT load "
        "and the one-off filter build cancel. RSS: peak of the largest process [MiB]."
    )
    print(f"{'run':30} {'wall N':>8} {'wall 2N':>8} {'s/frame':>8} {'RSS N':>7} {'RSS 2N':>7}")
    for name, w_n, w_2n, per, r_n, r_2n in rows:
        print(f"{name:30} {w_n:8.2f} {w_2n:8.2f} {per:8.3f} {r_n:7.0f} {r_2n:7.0f}")
    floor, one, two = rows[0][3], rows[1][3], rows[2][3]
    ratio, speedup, rss_ratio = one / floor, one / two, rows[1][5] / rows[1][4]
    print(f"N = {n}; turbsim (1 worker) / floor: {ratio:.2f}   (goal <= 1.5)")
    print(f"throughput 2 workers / 1 worker: {speedup:.2f}x   (goal >= 1.6 on 2 cores)")
    print(f"peak RSS 2N / N images (1 worker): {rss_ratio:.2f}   (goal: flat, ~1.0)")
    keys = ["run", "wall_n_s", "wall_2n_s", "s_per_frame", "rss_n_mib", "rss_2n_mib"]
    result = {
        "images_n": n,
        "rows": [dict(zip(keys, r, strict=True)) for r in rows],
        "ratio_over_floor": ratio,
        "speedup_2_workers": speedup,
        "rss_ratio_2n_over_n": rss_ratio,
        "compression": args.compression,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
