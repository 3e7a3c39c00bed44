"""Monte Carlo diagnostics of generated tilt fields against the closed-form theory.

What `turbsim plot-stats` draws: the empirical longitudinal and lateral correlation of the
displacement along both image axes, next to the theory b(d / f theta_D) x taper (SPEC-turbsim
sections 3-4), and the measured variance against sigma_r^2 over a range of Cn2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from turbsim.physics import blur, theory
from turbsim.physics.field import blackman, sample_tilt_field
from turbsim.physics.params import TurbulenceParams
from turbsim.physics.theory import sigma_r_px, tilt_correlation


def rendered_taper(n: int, lag: np.ndarray) -> np.ndarray:
    """Taper of the rendered correlation at integer ``lag`` [px] along an axis of length n.

    The symmetric Blackman window of length 2n is centred half a sample before the zero lag,
    and the original keeps the real part of the spectrum: (w[n + d] + w[n - d]) / (2 w[n]).
    """
    w = blackman(2 * n)
    lag = np.asarray(lag, dtype=np.int64)
    return (w[n + lag] + w[n - lag]) / (2.0 * w[n])


@dataclass
class CorrelationCurves:
    """Empirical and theoretical correlations (unit variance) at lags ``lags_px`` [px].

    Keys of ``measured``/``theory``/``stderr``: ``"x_par"`` (column component along x),
    ``"x_perp"`` (row component along x), ``"y_par"`` (row component along y), ``"y_perp"``
    (column component along y).
    """

    lags_px: np.ndarray
    eta: np.ndarray
    measured: dict[str, np.ndarray]
    stderr: dict[str, np.ndarray]
    theory: dict[str, np.ndarray]
    n_fields: int
    shape: tuple[int, int]
    sigma_r_px: float

    def largest_deviation(self) -> float:
        """max |measured - theory| [1] over every lag of the four curves."""
        return max(float(np.max(np.abs(self.measured[k] - self.theory[k]))) for k in self.measured)


def correlation_curves(
    params: TurbulenceParams,
    shape: tuple[int, int],
    n_fields: int,
    rng: np.random.Generator,
    lags_px: np.ndarray | None = None,
) -> CorrelationCurves:
    """Correlation of ``n_fields`` sampled fields at lags along x and y, and the theory.

    The correlation at lag d is 1 - D(d) / (2 sigma_r^2) with the structure function
    D(d) = E[(F(p + d) - F(p))^2]: unbiased, unlike a product of sample means.
    """
    h, w = shape
    if lags_px is None:
        top = max(2, min(h, w) // 2)
        lags_px = np.unique(np.round(np.geomspace(1, top, 24)).astype(np.int64))
    lags = np.asarray(lags_px, dtype=np.int64)
    sigma = sigma_r_px(params)
    s2 = sigma**2
    sums = {k: np.zeros((n_fields, lags.size)) for k in ("x_par", "x_perp", "y_par", "y_perp")}
    for i in range(n_fields):
        f = sample_tilt_field(params, shape, rng).astype(np.float64)
        row, col = f[0], f[1]
        for j, d in enumerate(lags):
            if d < w:
                sums["x_par"][i, j] = np.mean((col[:, d:] - col[:, :-d]) ** 2)
                sums["x_perp"][i, j] = np.mean((row[:, d:] - row[:, :-d]) ** 2)
            if d < h:
                sums["y_par"][i, j] = np.mean((row[d:, :] - row[:-d, :]) ** 2)
                sums["y_perp"][i, j] = np.mean((col[d:, :] - col[:-d, :]) ** 2)
    measured = {k: 1.0 - v.mean(axis=0) / (2 * s2) for k, v in sums.items()}
    stderr = {k: v.std(axis=0, ddof=1) / math.sqrt(n_fields) / (2 * s2) for k, v in sums.items()}
    b_par, b_perp = tilt_correlation(params, lags.astype(np.float64))
    tx, ty = rendered_taper(w, np.minimum(lags, w - 1)), rendered_taper(h, np.minimum(lags, h - 1))
    theory = {
        "x_par": b_par * tx,
        "x_perp": b_perp * tx,
        "y_par": b_par * ty,
        "y_perp": b_perp * ty,
    }
    return CorrelationCurves(
        lags_px=lags,
        eta=lags / params.f_theta_d_px,
        measured=measured,
        stderr=stderr,
        theory=theory,
        n_fields=n_fields,
        shape=(h, w),
        sigma_r_px=sigma,
    )


@dataclass
class VarianceLine:
    """Measured mean square per component [px^2] against sigma_r^2 for each Cn2 [m^-2/3]."""

    cn2: np.ndarray
    theory_px2: np.ndarray
    measured_px2: np.ndarray  # (n, 2): row, column
    stderr_px2: np.ndarray  # (n, 2)


def variance_vs_cn2(
    params: TurbulenceParams,
    cn2_values: np.ndarray,
    shape: tuple[int, int],
    n_fields: int,
    rng: np.random.Generator,
) -> VarianceLine:
    """Mean of F^2 over ``n_fields`` fields for each Cn2 (the other parameters fixed)."""
    cn2_values = np.asarray(cn2_values, dtype=np.float64)
    measured = np.zeros((cn2_values.size, 2))
    stderr = np.zeros((cn2_values.size, 2))
    theory = np.zeros(cn2_values.size)
    for i, cn2 in enumerate(cn2_values):
        p = params.with_cn2(float(cn2))
        per = np.array(
            [
                np.mean(sample_tilt_field(p, shape, rng).astype(np.float64) ** 2, axis=(1, 2))
                for _ in range(n_fields)
            ]
        )
        measured[i] = per.mean(axis=0)
        stderr[i] = per.std(axis=0, ddof=1) / math.sqrt(n_fields)
        theory[i] = sigma_r_px(p) ** 2
    return VarianceLine(cn2_values, theory, measured, stderr)


def stats_record(curves: CorrelationCurves, line: VarianceLine) -> dict[str, Any]:
    """The numbers of `turbsim plot-stats --json` as plain lists (JSON-serialisable).

    Keys: ``lags_px`` [px], ``eta`` [1], ``measured``/``stderr``/``theory`` (each a dict of the
    four curves of :class:`CorrelationCurves`) [1], ``cn2`` [m^-2/3], ``variance_theory_px2``
    (n,) and ``variance_measured_px2`` (n, 2: row, column) [px^2].
    """
    return {
        "lags_px": curves.lags_px.tolist(),
        "eta": curves.eta.tolist(),
        "measured": {k: v.tolist() for k, v in curves.measured.items()},
        "stderr": {k: v.tolist() for k, v in curves.stderr.items()},
        "theory": {k: v.tolist() for k, v in curves.theory.items()},
        "cn2": line.cn2.tolist(),
        "variance_theory_px2": line.theory_px2.tolist(),
        "variance_measured_px2": line.measured_px2.tolist(),
    }


# ------------------------------------------------------------------- blur consistency (SPEC 8)
@dataclass(frozen=True)
class BlurConsistency:
    """The SPEC 8 cross-checks of the blur against the tilt of the same atmosphere.

    Attributes:
        r0_m: Fried parameter [m]; ``d_over_r0`` [1]; ``q`` = D / sqrt(lambda L) [1].
        z_tilt_px: one-axis Z-tilt std from r0, sqrt(0.1698 (lambda/D)^2 (D/r0)^(5/3)) f [px].
        sigma_r_px: the Technion tilt std of the same params [px].
        x_over_d: pupil separations x / D [1] of the exponent rows (x = lambda f nu).
        short_exposure, tilt, long_exposure: exponents (log MTF) [1] at those separations:
            Fried's short-exposure, the tilt's Gaussian -2 pi^2 sigma_r^2 nu^2, and Fried's
            long-exposure -3.44 (x / r0)^(5/3).
        max_exponent_error: max over 0 < x <= D of |(SE + tilt) / LE - 1| [1].
    """

    r0_m: float
    d_over_r0: float
    q: float
    z_tilt_px: float
    sigma_r_px: float
    x_over_d: np.ndarray
    short_exposure: np.ndarray
    tilt: np.ndarray
    long_exposure: np.ndarray
    max_exponent_error: float

    def table(self) -> str:
        """The checks as text (what `turbsim plot-stats` prints)."""
        lines = [
            f"blur consistency (docs/physics.md): r0 {self.r0_m * 1e3:.3f} mm, "
            f"D/r0 {self.d_over_r0:.1f}, q {self.q:.2f}",
            f"  tilt std: Z-tilt from r0 {self.z_tilt_px:.3f} px vs Technion sigma_r "
            f"{self.sigma_r_px:.3f} px ({100 * (self.z_tilt_px / self.sigma_r_px - 1):+.2f} %)",
            "  log MTF at x/D:   short-exp + tilt = sum      vs long-exposure",
        ]
        for k, u in enumerate(self.x_over_d):
            se, tilt, le = self.short_exposure[k], self.tilt[k], self.long_exposure[k]
            lines.append(
                f"    {u:5.2f}        {se:9.2f} {tilt:9.2f} {se + tilt:9.2f}  {le:9.2f}"
                f"  ({100 * ((se + tilt) / le - 1):+.1f} %)"
            )
        worst = 100 * self.max_exponent_error
        lines.append(f"  max |(SE + tilt) / LE - 1| over x <= D: {worst:.1f} %")
        return "\n".join(lines)


def blur_consistency(
    params: TurbulenceParams, x_over_d: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 1.0)
) -> BlurConsistency:
    """Cross-check the short-exposure blur against the tilt of the same atmosphere (SPEC 8).

    The long-exposure MTF of Fried (1966) is the short-exposure MTF times the tilt's Gaussian;
    with the Technion tilt the exponents agree within a few per cent for x <= D (3.8 % at the
    reference camera; 2 pi^2 x 0.1698 = 3.352 against 3.44, plus the finite-q factor c(q)).
    """
    r0 = theory.r0_m(params)
    sigma_r = theory.sigma_r_px(params)

    def exponents(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = u * params.aperture_m
        nu = x / (params.wavelength_m * params.focal_length_px)
        se = -3.44 * (x / r0) ** (5 / 3) * (1 - blur.near_field_alpha(params) * np.cbrt(u))
        return se, -2 * np.pi**2 * sigma_r**2 * nu**2, -3.44 * (x / r0) ** (5 / 3)

    fine = np.linspace(1e-3, 1.0, 1000)
    se_f, tilt_f, le_f = exponents(fine)
    u = np.asarray(x_over_d, np.float64)
    se, tilt, le = exponents(u)
    return BlurConsistency(
        r0_m=r0,
        d_over_r0=params.aperture_m / r0,
        q=params.q,
        z_tilt_px=params.focal_length_px * theory.z_tilt_sigma_rad(params),
        sigma_r_px=sigma_r,
        x_over_d=u,
        short_exposure=se,
        tilt=tilt,
        long_exposure=le,
        max_exponent_error=float(np.max(np.abs((se_f + tilt_f) / le_f - 1))),
    )
