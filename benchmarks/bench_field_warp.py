"""Field + warp time per frame against a bare numpy/scipy/cv2 pipeline doing the same-size work.

Bare pipeline (what anyone would write from the Matlab original, filter cached): real white noise
on the 2H x 2W grid for both components, two forward FFTs, multiply by the cached 2x2 filter,
two inverse FFTs, real part, crop the central H x W block, scale, cv2.remap (bilinear, replicate
border). turbsim: ``sample_tilt_field`` + ``warp_image``. Also the one-off cost of a new
parameter set (correlation table integration + filter) and the cost of its cached reuse.

Usage: python benchmarks/bench_field_warp.py [--height 1024 --width 2048 --repeats 7]
Prints a table and writes JSON (default benchmarks/results/field_warp.json). Never run as a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import scipy.fft as sfft

import turbsim
from turbsim import TurbulenceParams, sample_tilt_field, warp_image
from turbsim.physics.field import (
    _spectral_filter_cached,
    filter_spectra,
    get_num_threads,
    spectral_filter,
)
from turbsim.physics.theory import compute_correlation_table, sigma_r_px


def _full_plane(half: np.ndarray) -> np.ndarray:
    rows = half.shape[0]
    return np.concatenate([half, half[:, 1:-1][:, ::-1][np.r_[0, rows - 1 : 0 : -1]]], axis=1)


def bare_pipeline(image, k_cc, k_rr, k_cr, var_col, var_row, sigma, rng, workers):
    """The straightforward transcription: real noise, FFT, filter, IFFT, crop, remap."""
    n_rows, n_cols = k_cc.shape
    h, w = n_rows // 2, n_cols // 2
    z_c = sfft.fft2(rng.standard_normal((n_rows, n_cols)), workers=workers)
    z_r = sfft.fft2(rng.standard_normal((n_rows, n_cols)), workers=workers)
    f_col = sfft.ifft2(k_cc * z_c + k_cr * z_r, workers=workers).real
    f_row = sfft.ifft2(k_cr * z_c + k_rr * z_r, workers=workers).real
    r0, c0 = h // 2, w // 2
    f_col = f_col[r0 : r0 + h, c0 : c0 + w] * (sigma / math.sqrt(var_col))
    f_row = f_row[r0 : r0 + h, c0 : c0 + w] * (sigma / math.sqrt(var_row))
    map_x = (np.arange(w, dtype=np.float32)[None, :] + f_col).astype(np.float32)
    map_y = (np.arange(h, dtype=np.float32)[:, None] + f_row).astype(np.float32)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def ours(image, params, rng):
    return warp_image(image, sample_tilt_field(params, image.shape[:2], rng))


def _median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _cached_table_load_seconds(rho: float, cache: str) -> float:
    """Time to get the table from the disk cache in a fresh process (what a new run pays)."""
    code = (
        "import time; from turbsim import correlation_table; t=time.perf_counter(); "
        f"correlation_table({rho!r}); print(time.perf_counter()-t)"
    )
    env = {**os.environ, "TURBSIM_CACHE_DIR": cache}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "field_warp.json"
    )
    args = ap.parse_args()
    h, w = args.height, args.width
    workers = get_num_threads()
    params = TurbulenceParams(cn2=1e-12, path_length_m=2000.0, aperture_m=0.3 / 5.6)
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)

    # --- one-off cost of a new parameter set (fresh cache folder) and its cached reuse
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TURBSIM_CACHE_DIR"] = cache
        t0 = time.perf_counter()
        compute_correlation_table(params.rho, "spherical", "matlab")
        t_table = time.perf_counter() - t0
        turbsim.correlation_table(params.rho)  # fills the disk cache
        t_table_cached = _cached_table_load_seconds(params.rho, cache)
        _spectral_filter_cached.cache_clear()
        t0 = time.perf_counter()
        filt = spectral_filter(params, (h, w))
        t_filter = time.perf_counter() - t0
        t0 = time.perf_counter()
        spectral_filter(params.with_cn2(3e-13), (h, w))
        t_filter_cached = time.perf_counter() - t0

        half = filter_spectra(params.f_theta_d_px, params.rho, "spherical", (h, w))
        k_cc, k_rr, k_cr = (_full_plane(k) for k in half)
    del filt

    # --- per frame, after warm-up
    rng_b, rng_o = np.random.default_rng(1), np.random.default_rng(1)
    sigma = sigma_r_px(params)
    variances = _vars(k_cc, k_rr, k_cr)
    bare_pipeline(image, k_cc, k_rr, k_cr, *variances, sigma, rng_b, workers)  # warm-up
    ours(image, params, rng_o)  # warm-up (JIT, filter cache)
    t_bare, bare_all = _median_time(
        lambda: bare_pipeline(image, k_cc, k_rr, k_cr, *variances, sigma, rng_b, workers),
        args.repeats,
    )
    t_ours, ours_all = _median_time(lambda: ours(image, params, rng_o), args.repeats)
    t_field, _ = _median_time(lambda: sample_tilt_field(params, (h, w), rng_o), args.repeats)
    fld = sample_tilt_field(params, (h, w), rng_o)
    t_warp, _ = _median_time(lambda: warp_image(image, fld), args.repeats)
    t_remap, _ = _median_time(
        lambda: cv2.remap(
            image,
            (np.arange(w, dtype=np.float32)[None, :] + fld[1]),
            (np.arange(h, dtype=np.float32)[:, None] + fld[0]),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        ),
        args.repeats,
    )
    # statistical sanity of what was timed: per-component mean square over a few frames
    ms = np.mean(
        [np.mean(sample_tilt_field(params, (h, w), rng_o) ** 2, axis=(1, 2)) for _ in range(4)],
        axis=0,
    )

    rows = [
        ("correlation table, new rho (matlab quadrature)", t_table),
        ("correlation table, from disk cache (new process)", t_table_cached),
        (f"filter {h}x{w}, new parameter set", t_filter),
        (f"filter {h}x{w}, cached (other Cn2)", t_filter_cached),
        ("bare numpy/scipy/cv2 field + remap per frame", t_bare),
        ("turbsim field + warp per frame", t_ours),
        ("  of which sample_tilt_field", t_field),
        ("  of which warp_image", t_warp),
        ("cv2.remap alone (same field)", t_remap),
    ]
    ratio = t_ours / t_bare
    print(
        f"turbsim {turbsim.__version__}  frame {h}x{w}x3 uint8  threads {workers}  "
        f"{platform.processor() or platform.machine()}  (median of {args.repeats})"
    )
    print(f"{'what':52} {'seconds':>10}")
    for name, sec in rows:
        print(f"{name:52} {sec:10.4f}")
    print(f"{'ratio turbsim / bare (goal <= 1.3)':52} {ratio:10.3f}")
    print(f"{'warp_image / cv2.remap':52} {t_warp / t_remap:10.3f}")
    print(f"mean square per component / sigma_r^2 over 4 frames: {ms / sigma**2}")

    result = {
        "frame": [h, w, 3],
        "threads": workers,
        "repeats": args.repeats,
        "seconds": dict(rows),
        "bare_times": bare_all,
        "turbsim_times": ours_all,
        "ratio_turbsim_over_bare": ratio,
        "warp_over_remap": t_warp / t_remap,
        "mean_square_over_sigma2": ms.tolist(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


def _vars(k_cc, k_rr, k_cr) -> tuple[float, float]:
    n = k_cc.size
    return float(np.sum(k_cc**2 + k_cr**2) / n), float(np.sum(k_rr**2 + k_cr**2) / n)


if __name__ == "__main__":
    main()
