"""Straight transcriptions of the Matlab original (Schwartzman et al., ICCP 2017), slow and literal.

Used only by tests, on tiny problems, to hold the fast vectorised port to the original algorithm.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft as sfft
import scipy.special as sp


def aa_correlation_literal(rho: float, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AAcorrelation.m, spherical wave, at the given normalised angles (no table, no zeroing).

    Loops over beta exactly as the original: trapz over kappa (logspace(-2, 2, 1000)) then over
    xi (linspace(0, 1, 1000)), with scipy's jv for besselj; normalised by beta = 0.01.
    """
    kappa = np.logspace(-2, 2, 1000)
    xi = np.linspace(0, 1, 1000)
    gk = ((2 * rho * kappa) ** 2 + 1) ** (-11 / 6) * (sp.jv(2, kappa) ** 2 / kappa)

    def integrals(beta: float) -> tuple[float, float]:
        arg = 2 * beta * np.outer(xi * (1 - xi), kappa)
        j0 = sp.jv(0, arg)
        j2 = sp.jv(2, arg)
        inner_minus = np.trapezoid(gk * (j0 - j2), kappa, axis=1)
        inner_plus = np.trapezoid(gk * (j0 + j2), kappa, axis=1)
        return float(np.trapezoid(inner_minus, xi)), float(np.trapezoid(inner_plus, xi))

    m0, p0 = integrals(0.01)
    vals = np.array([integrals(float(b)) for b in np.atleast_1d(betas)])
    return vals[:, 0] / m0, vals[:, 1] / p0


def aa_variance_coefficient_literal(q: float, wave: str) -> float:
    """AAvariance.m, CalcType 'full', written the way the Matlab line reads (mpmath 2F1)."""
    import mpmath

    beta = 0.5216
    coef = math.sqrt(3) / 16 * math.gamma(1 / 6) * math.gamma(8 / 3) * (beta / 2) ** (-1 / 3)
    if wave == "plane":
        return coef * (
            1
            + 6
            / 5
            * (math.pi / 2) ** (1 / 6)
            * (beta * q) ** (1 / 3)
            * (1 + (math.pi / 2) ** 2 * (beta * q) ** 4) ** (5 / 12)
            * math.sin(5 / 6 * math.atan(2 / (math.pi * (beta * q) ** 2)))
        )
    f = complex(mpmath.hyp2f1(1 / 6, 17 / 6, 23 / 6, 1 - 0.5j * math.pi * (beta * q) ** 2))
    return 3 / 8 * coef * (1 + 16 / 17 * ((-2j / math.pi / (beta * q) ** 2) ** (-1 / 6) * f).real)


def full_plane(half: np.ndarray) -> np.ndarray:
    """Rebuild a full (2H, 2W) even spectrum from its rfft half plane (2H, W + 1)."""
    n_rows = half.shape[0]
    mirror = half[:, 1:-1][:, ::-1][np.r_[0, n_rows - 1 : 0 : -1]]
    return np.concatenate([half, mirror], axis=1)


def matlab_field(
    k_cc: np.ndarray, k_rr: np.ndarray, k_cr: np.ndarray, z_c: np.ndarray, z_r: np.ndarray
) -> np.ndarray:
    """gen_randomfield_fft.m on one noise draw: full-plane filters (2H, 2W), real noise (2H, 2W).

    Returns the central H x W block, unit ensemble variance, as (2, H, W): [0] row, [1] column
    (the original's Fy, Fx).
    """
    n_rows, n_cols = k_cc.shape
    h, w = n_rows // 2, n_cols // 2
    zc, zr = sfft.fft2(z_c), sfft.fft2(z_r)
    fx = np.real(sfft.ifft2(k_cc * zc + k_cr * zr))
    fy = np.real(sfft.ifft2(k_cr * zc + k_rr * zr))
    n = n_rows * n_cols
    varx = np.sum(k_cc**2 + k_cr**2) / n
    vary = np.sum(k_rr**2 + k_cr**2) / n
    r0, c0 = h // 2, w // 2
    return np.stack(
        [fy[r0 : r0 + h, c0 : c0 + w] / np.sqrt(vary), fx[r0 : r0 + h, c0 : c0 + w] / np.sqrt(varx)]
    )
