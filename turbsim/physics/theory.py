"""Closed-form turbulence theory: angle-of-arrival variance and tilt correlation tables.

Sources (as used by the Matlab code of Schwartzman et al., ICCP 2017, files AAvariance.m,
AAcorrelation.m and calc_correlation_Cv.m):

* Variance: sigma_A^2 = c(q) Cn2 L D^(-1/3) with the closed-form coefficients of
  Cheon & Muschinski, "Closed-form approximations for the angle-of-arrival variance of plane and
  spherical waves propagating through homogeneous and isotropic turbulence", JOSA A 24 (2007).
* Correlation: Belen'kii et al., "Turbulence-induced edge image waviness: theory and experiment",
  eq. (4): von Karman spectrum with outer scale, Z-tilt filter J2(k)^2 / k.

Everything here is a pure function of its arguments except :func:`correlation_table`, which keeps
an on-disk cache (:mod:`turbsim.physics.table_cache`) because the table costs seconds to a minute to
integrate. The quantities of one :class:`~turbsim.physics.params.TurbulenceParams` (sigma_A,
sigma_r, r0) are functions of it here; :func:`turbsim.physics.quantities.describe` lists them all
with their units.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.special as sp

from turbsim.physics import table_cache
from turbsim.physics.choices import WAVES
from turbsim.physics.params import TurbulenceParams, shape_value

#: Notices of this module (logger "turbsim.physics.theory"); the commands print INFO ones on stderr.
logger = logging.getLogger(__name__)

#: b in the Cheon-Muschinski closed forms.
_B = 0.5216
#: c0 = (sqrt(3)/16) Gamma(1/6) Gamma(8/3) (b/2)^(-1/3) = 1.41901.
C0 = (
    math.sqrt(3.0)
    / 16.0
    * math.gamma(1.0 / 6.0)
    * math.gamma(8.0 / 3.0)
    * (_B / 2.0) ** (-1.0 / 3.0)
)
#: Geometric-optics fallbacks of the Matlab code (valid for q >> 1): spherical, plane.
GEOMETRIC_OPTICS_COEFFICIENT = {"spherical": 1.09, "plane": 2.91}


# --------------------------------------------------------------------------------- variance
def variance_coefficient(q: float, wave: str = "spherical") -> float:
    """Coefficient c(q) of the one-axis AoA variance sigma_A^2 = c Cn2 L D^(-1/3).

    Args:
        q: D / sqrt(lambda L) [1], the aperture in Fresnel lengths (> 0).
        wave: "spherical" or "plane".

    Returns:
        c [1]. Spherical: (3/8) c0 [1 + (16/17) Re{(-2i/(pi (bq)^2))^(-1/6)
        2F1(1/6, 17/6; 23/6; 1 - i (pi/2)(bq)^2)}]; plane: c0 [1 + (6/5)(pi/2)^(1/6) (bq)^(1/3)
        (1 + (pi/2)^2 (bq)^4)^(5/12) sin((5/6) atan(2/(pi (bq)^2)))]
        (Cheon & Muschinski 2007; AAvariance.m, CalcType 'full'). Limits for q -> infinity:
        1.0643 (spherical), 2.8380 (plane).
    """
    if not (math.isfinite(q) and q > 0):
        raise ValueError(f"q must be finite and > 0, got {q!r}")
    bq = _B * q
    if wave == "plane":
        return C0 * (
            1.0
            + 1.2
            * (math.pi / 2.0) ** (1.0 / 6.0)
            * bq ** (1.0 / 3.0)
            * (1.0 + (math.pi / 2.0) ** 2 * bq**4) ** (5.0 / 12.0)
            * math.sin(5.0 / 6.0 * math.atan(2.0 / (math.pi * bq**2)))
        )
    if wave == "spherical":
        z = 1.0 - 0.5j * math.pi * bq**2
        hyp = complex(sp.hyp2f1(1.0 / 6.0, 17.0 / 6.0, 23.0 / 6.0, z))
        pref = (-2j / (math.pi * bq**2)) ** (-1.0 / 6.0)  # principal branch
        return 3.0 / 8.0 * C0 * (1.0 + 16.0 / 17.0 * (pref * hyp).real)
    raise ValueError(f"wave must be one of {WAVES}, got {wave!r}")


def aoa_variance(params: TurbulenceParams) -> float:
    """One-axis angle-of-arrival variance sigma_A^2 = c(q) Cn2 L D^(-1/3) [rad^2]."""
    c = variance_coefficient(params.q, params.wave)
    return c * params.cn2 * params.path_length_m * params.aperture_m ** (-1.0 / 3.0)


def sigma_a_rad(params: TurbulenceParams) -> float:
    """Standard deviation of the angle of arrival on one axis, sigma_A [rad]."""
    return math.sqrt(aoa_variance(params))


def sigma_r_px(params: TurbulenceParams) -> float:
    """Standard deviation of the image displacement on one axis, sigma_r = f sigma_A [px].

    The reference camera (300 mm f/5.6, 4 um pixels, 2 km, h = 4 m, Cn2 = 1e-12) gives 5.597 px.
    """
    return params.focal_length_px * sigma_a_rad(params)


def r0_m(params: TurbulenceParams) -> float:
    """Fried parameter r0 [m] of the path (Kolmogorov; spherical wave has the 3/8 factor).

    r0 = (0.423 k^2 Cn2 L a)^(-3/5) with k = 2 pi / lambda and a = 3/8 (spherical) or 1
    (plane), Andrews & Phillips, Laser Beam Propagation through Random Media, eq. 6.62.
    """
    k = 2.0 * math.pi / params.wavelength_m
    a = 3.0 / 8.0 if params.wave == "spherical" else 1.0
    return (0.423 * k * k * params.cn2 * params.path_length_m * a) ** (-3.0 / 5.0)


#: B(8/3, 8/3) = Gamma(8/3)^2 / Gamma(16/3): the path weighting of the spherical-wave
#: isoplanatic angle, int_0^1 z^(5/3) (1 - z)^(5/3) dz (Fried 1982; SPEC section 8).
_BETA_8_3 = math.gamma(8.0 / 3.0) ** 2 / math.gamma(16.0 / 3.0)


def theta0_rad(params: TurbulenceParams) -> float:
    """Isoplanatic angle theta0 [rad] of a uniform-Cn2 path (SPEC section 8).

    plane: theta0 = (2.914 k^2 Cn2 L^(8/3) 3/8)^(-3/5); spherical: the 3/8 becomes
    B(8/3, 8/3) = 0.05641 (Fried, JOSA 72, 52, 1982; Andrews & Phillips, *Laser Beam Propagation
    through Random Media*, 2nd ed., section 6.5). Over theta0 the instantaneous PSF decorrelates.
    """
    k = 2.0 * math.pi / params.wavelength_m
    weight = _BETA_8_3 if params.wave == "spherical" else 3.0 / 8.0
    path = params.cn2 * params.path_length_m ** (8.0 / 3.0)
    return (2.914 * k * k * path * weight) ** (-3.0 / 5.0)


def z_tilt_sigma_rad(params: TurbulenceParams) -> float:
    """One-axis Z-tilt std [rad] of Kolmogorov turbulence, sqrt(0.1698 (lambda/D)^2 (D/r0)^(5/3)).

    Geometric-optics cross-check of :func:`sigma_a_rad` with the same r0 (Tyler, JOSA A 11, 358,
    1994; SPEC section 8): the two agree to 0.1 % as q -> infinity.
    """
    ratio = params.aperture_m / r0_m(params)
    return math.sqrt(0.1698 * (params.wavelength_m / params.aperture_m) ** 2 * ratio ** (5 / 3))


# ------------------------------------------------------------------------ correlation table
@dataclass(frozen=True)
class Quadrature:
    """Discretisation of the correlation integrals (SPEC-turbsim section 3).

    Attributes:
        name: key used in the cache.
        n_kappa: points of k = logspace(-2, 2, n_kappa) (trapezoid rule).
        n_xi: points of xi = linspace(0, 1, n_xi) along the path (spherical wave; trapezoid).
        n_eta: points of eta = logspace(-2, log10(eta_max_per_rho * rho), n_eta).
        eta_max_per_rho: the table ends at eta = eta_max_per_rho * rho.
    """

    name: str
    n_kappa: int
    n_xi: int
    n_eta: int
    eta_max_per_rho: float = 1000.0


#: "matlab" is the original discretisation; "fast" integrates xi with 5x fewer points
#: (|delta b| < 2e-3 from "matlab" at eta <= 500) for tests and quick looks.
QUADRATURES: dict[str, Quadrature] = {
    "matlab": Quadrature("matlab", 1000, 1000, 1000),
    "fast": Quadrature("fast", 1000, 200, 1000),
}

#: eta of the first table point; b = 1 below it.
ETA_MIN = 0.01


@dataclass(frozen=True)
class CorrelationTable:
    """Normalised tilt correlations on a log-spaced grid of eta = theta / theta_D.

    Attributes:
        rho: L0 / D [1].
        wave: "spherical" or "plane".
        quadrature: name of the :class:`Quadrature` used.
        eta: (n,) float64, increasing, eta[0] = 0.01.
        b_par: (n,) longitudinal correlation (component parallel to the separation), b_par[0] = 1.
        b_perp: (n,) lateral correlation (component perpendicular to the separation).
    """

    rho: float
    wave: str
    quadrature: str
    eta: np.ndarray
    b_par: np.ndarray
    b_perp: np.ndarray

    def __call__(self, eta: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(b_par, b_perp) at ``eta`` [1] by linear interpolation on the table.

        Like calc_correlation_Cv.m: eta is clamped to the table's last point, and b = 1 below the
        first (eta < 0.01, i.e. zero separation).
        """
        eta = np.asarray(eta, dtype=np.float64)
        return (
            np.interp(eta, self.eta, self.b_par, left=1.0, right=self.b_par[-1]),
            np.interp(eta, self.eta, self.b_perp, left=1.0, right=self.b_perp[-1]),
        )

    def half_correlation_eta(self) -> tuple[float, float]:
        """eta [1] where b_par and b_perp first fall to 1/2 (linear interpolation)."""
        return _first_crossing(self.eta, self.b_par, 0.5), _first_crossing(
            self.eta, self.b_perp, 0.5
        )


def _first_crossing(x: np.ndarray, y: np.ndarray, level: float) -> float:
    below = np.nonzero(y < level)[0]
    if below.size == 0 or below[0] == 0:
        return math.nan
    i = below[0]
    return float(x[i - 1] + (level - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1]))


def _trapezoid_weights(x: np.ndarray) -> np.ndarray:
    """Weights w with sum(w * f(x)) == trapz(x, f(x)) for any f."""
    w = np.zeros_like(x)
    dx = np.diff(x)
    w[:-1] += dx / 2.0
    w[1:] += dx / 2.0
    return w


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _bessel_integrals(args: np.ndarray, kappa: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """For each a in ``args``: sum_k weights_k [J0(a k), 2 J1(a k) / (a k)] -> (len(args), 2).

    Uses J0 - J2 = 2 J0 - 2 J1(x)/x and J0 + J2 = 2 J1(x)/x, so only J0 and J1 are evaluated.
    Vectorised in chunks on a few threads (scipy's ufuncs release the GIL).
    """
    out = np.empty((args.size, 2))

    def work(sl: slice) -> None:
        x = np.multiply.outer(args[sl], kappa)
        j0 = sp.j0(x)
        with np.errstate(invalid="ignore", divide="ignore"):
            j1x = np.where(x > 0, 2.0 * sp.j1(x) / np.where(x > 0, x, 1.0), 1.0)
        out[sl, 0] = j0 @ weights
        out[sl, 1] = j1x @ weights

    chunk = max(1, 2_000_000 // kappa.size)
    threads = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, _chunks(args.size, chunk)))
    return out


def compute_correlation_table(
    rho: float, wave: str = "spherical", quadrature: str = "matlab"
) -> CorrelationTable:
    """Integrate the tilt correlations b_par(eta), b_perp(eta) (no cache; see correlation_table).

    Kernel G(k) = ((2 rho k)^2 + 1)^(-11/6) J2(k)^2 / k. Spherical wave:
    I_-+(eta) = int_0^1 dxi int dk G(k) [J0(2 eta xi (1-xi) k) -+ J2(2 eta xi (1-xi) k)],
    plane wave: no xi integral and argument 2 eta k. b_par = I_- / I_-(eta_0),
    b_perp = I_+ / I_+(eta_0) with eta_0 = 0.01 (AAcorrelation.m). The spherical b_par is set to
    0 from the last eta <= 1000 on, as the original does to hide quadrature noise.

    Args:
        rho: L0 / D [1] (> 0).
        wave: "spherical" or "plane".
        quadrature: a key of :data:`QUADRATURES`.
    """
    if not (math.isfinite(rho) and rho > 0):
        raise ValueError(f"rho must be finite and > 0, got {rho!r}")
    if wave not in WAVES:
        raise ValueError(f"wave must be one of {WAVES}, got {wave!r}")
    if quadrature not in QUADRATURES:
        raise ValueError(f"quadrature must be one of {sorted(QUADRATURES)}, got {quadrature!r}")
    qd = QUADRATURES[quadrature]
    kappa = np.logspace(-2.0, 2.0, qd.n_kappa)
    g = ((2.0 * rho * kappa) ** 2 + 1.0) ** (-11.0 / 6.0) * sp.jv(2, kappa) ** 2 / kappa
    wk = _trapezoid_weights(kappa) * g
    eta = np.logspace(-2.0, math.log10(qd.eta_max_per_rho * rho), qd.n_eta)

    if wave == "plane":
        integ = _bessel_integrals(2.0 * eta, kappa, wk)
        i_minus = 2.0 * integ[:, 0] - integ[:, 1]
        i_plus = integ[:, 1]
    else:
        xi = np.linspace(0.0, 1.0, qd.n_xi)
        wxi = _trapezoid_weights(xi)
        path = xi * (1.0 - xi)
        # xi(1-xi) is symmetric about 1/2: integrate the unique half and fold the weights.
        half = (qd.n_xi + 1) // 2
        path_u = path[:half]
        w_u = wxi[:half].copy()
        w_u[: qd.n_xi - half] += wxi[half:][::-1]
        args = np.multiply.outer(2.0 * eta, path_u).ravel()
        integ = _bessel_integrals(args, kappa, wk).reshape(eta.size, half, 2)
        inner_minus = 2.0 * integ[..., 0] - integ[..., 1]
        inner_plus = integ[..., 1]
        i_minus = inner_minus @ w_u
        i_plus = inner_plus @ w_u
        beyond = np.nonzero(np.diff(eta > 1000.0))[0]
        if beyond.size:
            i_minus[beyond[0] :] = 0.0
    return CorrelationTable(
        rho=float(rho),
        wave=wave,
        quadrature=quadrature,
        eta=eta,
        b_par=i_minus / i_minus[0],
        b_perp=i_plus / i_plus[0],
    )


@lru_cache(maxsize=32)
def _correlation_table_cached(rho: float, wave: str, quadrature: str) -> CorrelationTable:
    path = table_cache.table_path(rho, wave, quadrature)
    stored = table_cache.load(path, rho, wave, quadrature)
    if stored is not None:
        return CorrelationTable(float(rho), wave, quadrature, *stored)
    logger.info(
        "integrating the correlation table for rho = %.6g (%s wave; once, ~13 s on 2 cores "
        "with the matlab quadrature; then cached in %s)",
        rho, wave, path.parent,
    )  # fmt: skip
    table = compute_correlation_table(rho, wave, quadrature)
    table_cache.store(
        path, table.rho, table.wave, table.quadrature, table.eta, table.b_par, table.b_perp
    )
    return table


def correlation_table(
    rho: float, wave: str = "spherical", quadrature: str = "matlab", use_cache: bool = True
) -> CorrelationTable:
    """Tilt correlation table for rho = L0 / D, computed once per user and cached on disk.

    rho is first rounded to 12 significant digits (:func:`turbsim.physics.params.shape_value`). The
    cache (:mod:`turbsim.physics.table_cache`) is keyed by (rho, wave, quadrature, format
    version); a damaged file is recomputed. With ``use_cache=False`` nothing is read or written.
    """
    rho = shape_value(float(rho))
    if not use_cache:
        return compute_correlation_table(rho, wave, quadrature)
    return _correlation_table_cached(rho, wave, quadrature)


def tilt_correlation(
    params: TurbulenceParams, lag_px: np.ndarray | float, quadrature: str = "matlab"
) -> tuple[np.ndarray, np.ndarray]:
    """(b_par, b_perp) [1] at an image-plane separation ``lag_px`` [px] for ``params``.

    eta = lag_px / (f theta_D): the shape depends on the camera only through f theta_D and on
    the atmosphere only through rho.
    """
    table = correlation_table(params.rho, params.wave, quadrature)
    return table(np.asarray(lag_px, dtype=np.float64) / params.f_theta_d_px)


def covariance_images(
    table: CorrelationTable, f_theta_d_px: float, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit-variance tilt covariances on the centred 2H x 2W lag grid (calc_correlation_Cv.m).

    Lags: rows y = -H .. H-1 (row offset), columns x = -W .. W-1 (column offset); index (H, W)
    is zero lag. C(r) = b_perp I + (b_par - b_perp) r_hat r_hat^T.

    Returns:
        (c_cc, c_rr, c_cr): column-column, row-row and column-row covariance, each (2H, 2W)
        float64, with C(0) = I.
    """
    h, w = shape
    y = np.arange(-h, h, dtype=np.float64)[:, None]
    x = np.arange(-w, w, dtype=np.float64)[None, :]
    r2 = x * x + y * y
    b_par, b_perp = table(np.sqrt(r2) / f_theta_d_px)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = (b_par - b_perp) / r2
    diff[h, w] = 0.0
    c_cc = b_perp + diff * (x * x)
    c_rr = b_perp + diff * (y * y)
    c_cr = diff * (x * y)
    c_cc[h, w] = c_rr[h, w] = 1.0
    c_cr[h, w] = 0.0
    return c_cc, c_rr, c_cr
