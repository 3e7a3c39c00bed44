"""The on-disk cache of tilt correlation tables (the only reader of ``$TURBSIM_CACHE_DIR``).

A table costs seconds to a minute to integrate
(:func:`turbsim.physics.theory.compute_correlation_table`), so each user keeps one file per (rho,
wave, quadrature, format version) in :func:`cache_dir`. Files are published through the one atomic
writer (:mod:`turbsim._files`); a damaged or foreign file is never trusted (:func:`load` returns
None and the caller recomputes it). Deleting the folder is always safe.

numpy only: this module knows nothing of the theory; it stores and returns plain arrays.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from turbsim._files import write_npz

#: Version of the on-disk table format; bump when the integration changes.
CACHE_VERSION = 1

#: Environment variable naming the cache folder (default ``~/.cache/turbsim``).
CACHE_DIR_ENV = "TURBSIM_CACHE_DIR"


def cache_dir() -> Path:
    """Folder of the on-disk table cache: ``$TURBSIM_CACHE_DIR`` or ``~/.cache/turbsim``."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "turbsim"


def table_path(rho: float, wave: str, quadrature: str) -> Path:
    """Cache file of the table for ``rho`` = L0 / D [1], ``wave`` and ``quadrature``.

    ``correlation_{wave}_{quadrature}_rho{rho:.6g}_{16 hex}.npz`` in :func:`cache_dir`; the hex
    digest covers the exact float rho and :data:`CACHE_VERSION`.
    """
    key = f"v{CACHE_VERSION}|{float(rho).hex()}|{wave}|{quadrature}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / f"correlation_{wave}_{quadrature}_rho{rho:.6g}_{digest}.npz"


def load(
    path: Path, rho: float, wave: str, quadrature: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The arrays ``(eta, b_par, b_perp)`` [1] stored at ``path``, or None.

    None when the file is missing, unreadable, of another format version or another
    (rho, wave, quadrature), or holds non-finite correlations: the caller recomputes the table.
    """
    try:
        with np.load(path) as z:
            ok = (
                int(z["version"]) == CACHE_VERSION
                and float(z["rho"]) == float(rho)
                and str(z["wave"]) == wave
                and str(z["quadrature"]) == quadrature
            )
            if not ok:
                return None
            eta, b_par, b_perp = z["eta"], z["b_par"], z["b_perp"]
    except (OSError, KeyError, ValueError):
        return None
    if not (np.all(np.isfinite(b_par)) and np.all(np.isfinite(b_perp))):
        return None
    return eta, b_par, b_perp


def store(
    path: Path,
    rho: float,
    wave: str,
    quadrature: str,
    eta: np.ndarray,
    b_par: np.ndarray,
    b_perp: np.ndarray,
) -> None:
    """Publish one table at ``path`` atomically; a failure only warns.

    A read-only home must not stop the simulation: an OSError becomes a warning (attributed to
    the caller of :func:`turbsim.physics.theory.correlation_table`) and the table stays uncached.

    Args:
        path: the file, from :func:`table_path`.
        rho: L0 / D [1].
        wave: "spherical" or "plane".
        quadrature: name of the quadrature used.
        eta: (n,) float64 table abscissae [1].
        b_par: (n,) longitudinal correlation [1].
        b_perp: (n,) lateral correlation [1].
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_npz(
            path,
            version=CACHE_VERSION,
            rho=rho,
            wave=wave,
            quadrature=quadrature,
            eta=eta,
            b_par=b_par,
            b_perp=b_perp,
        )
    except OSError as exc:
        warnings.warn(
            f"turbsim: could not cache the correlation table in {path}: {exc}", stacklevel=3
        )
