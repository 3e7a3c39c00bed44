"""Where a displacement map folds: the fraction of pixels with no local inverse.

A warp ``distorted(p) = clean(p + F(p))`` is locally invertible at p only where the map
``phi(p) = p + F(p)`` preserves orientation, i.e. where the determinant of its Jacobian

    det J = (1 + dF_row/dr) (1 + dF_col/dc) - (dF_row/dc) (dF_col/dr)

is positive. Where ``det J <= 0`` the map folds: two image points land on one pixel and no
restoration by a warp can separate them. The *fold fraction* is the fraction of pixels where
``det J <= 0``, with the derivatives as central differences (``numpy.gradient``: one-sided at the
edges). Users need it to know whether their distortion can be inverted at all: the tilt field of
the BMVC 2020 air folds at about a third of the pixels at native Cityscapes size, and much less
once area-averaged to a training size (:func:`turbsim.physics.resample.area_resize_field`).

:func:`estimate_fold_fraction` measures it by Monte Carlo over a few fields of a recipe or of
fixed parameters, at the native size and (optionally) for the displacement a stored image shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from turbsim.physics.field import sample_tilt_field
from turbsim.physics.params import TurbulenceParams
from turbsim.physics.resample import area_resize_field
from turbsim.pipeline.recipe import Recipe
from turbsim.shards import read_manifest

__all__ = [
    "FoldEstimate",
    "estimate_fold_fraction",
    "fold_fraction",
    "jacobian_determinant",
    "shard_fold_fractions",
]


def jacobian_determinant(field: np.ndarray) -> np.ndarray:
    """det of the Jacobian of p -> p + F(p) at every pixel [1].

    Args:
        field: (2, H, W) or (N, 2, H, W) displacement [px]; [.., 0] row, [.., 1] column;
            H, W >= 2.

    Returns:
        float64 (H, W) or (N, H, W): ``(1 + dFr/dr)(1 + dFc/dc) - dFr/dc dFc/dr`` with the
        derivatives of ``numpy.gradient`` (central differences, one-sided at the edges).
    """
    field = np.asarray(field, dtype=np.float64)
    if field.ndim not in (3, 4) or field.shape[-3] != 2 or min(field.shape[-2:]) < 2:
        raise ValueError(f"field must be (2, H, W) or (N, 2, H, W), H, W >= 2; got {field.shape}")
    rows, cols = field[..., 0, :, :], field[..., 1, :, :]
    drow_dr, drow_dc = np.gradient(rows, axis=(-2, -1))
    dcol_dr, dcol_dc = np.gradient(cols, axis=(-2, -1))
    return (1.0 + drow_dr) * (1.0 + dcol_dc) - drow_dc * dcol_dr


def fold_fraction(field: np.ndarray) -> float:
    """Fraction of pixels where the map p -> p + F(p) folds (``det J <= 0``), in [0, 1].

    Args:
        field: (2, H, W) or (N, 2, H, W) displacement [px] (all N fields pooled).
    """
    return float(np.mean(jacobian_determinant(field) <= 0.0))


@dataclass(frozen=True)
class FoldEstimate:
    """Monte Carlo fold fractions of one recipe or set of parameters.

    Attributes:
        native: mean fold fraction of the native-size fields.
        native_stderr: its standard error over the fields.
        stored: mean fold fraction of the displacement the stored image shows (the field
            area-averaged to the stored size, in stored pixels); None without a stored size.
        stored_stderr: its standard error; None without a stored size.
        fields: number of fields drawn.
        native_size, stored_size: the (H, W) [px] measured at (stored None: not asked).
    """

    native: float
    native_stderr: float
    stored: float | None
    stored_stderr: float | None
    fields: int
    native_size: tuple[int, int]
    stored_size: tuple[int, int] | None

    def to_dict(self) -> dict[str, object]:
        """The JSON keys of ``turbsim params``: fold_fraction (+ _stderr), fold_fraction_stored
        (+ _stderr, with a stored size), fold_fields, native_size, stored_size."""
        out: dict[str, object] = {
            "fold_fraction": self.native,
            "fold_fraction_stderr": self.native_stderr,
            "fold_fields": self.fields,
            "native_size": list(self.native_size),
        }
        if self.stored_size is not None:
            out["fold_fraction_stored"] = self.stored
            out["fold_fraction_stored_stderr"] = self.stored_stderr
            out["stored_size"] = list(self.stored_size)
        return out


def _mean_and_stderr(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = float(np.mean(values))
    spread = float(np.std(values, ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
    return mean, spread


def estimate_fold_fraction(
    source: Recipe | TurbulenceParams,
    native_size: tuple[int, int],
    stored_size: tuple[int, int] | None = None,
    fields: int = 4,
    seed: int = 0,
) -> FoldEstimate:
    """Fold fractions by Monte Carlo over ``fields`` independent fields.

    Args:
        source: a recipe (each field gets its own draw of the recipe's physics and the recipe's
            normalisation) or fixed parameters (ensemble normalisation).
        native_size: (H, W) [px] at which the fields are rendered (the camera's frame).
        stored_size: (H, W) [px] of the stored images; the displacement they show is the field
            area-averaged to that size (:func:`turbsim.physics.resample.area_resize_field`).
        fields: number of fields, >= 1.
        seed: root of ``numpy.random.default_rng``.

    Returns:
        The means and standard errors (the fold fraction of one field varies little: at
        1024 x 2048 every field has ~1e5 independent patches).
    """
    if fields < 1:
        raise ValueError(f"fields must be >= 1, got {fields}")
    rng = np.random.default_rng(seed)
    native_values: list[float] = []
    stored_values: list[float] = []
    for _ in range(fields):
        if isinstance(source, Recipe):
            params, normalize = source.sample_params(rng), source.normalize
        else:
            params, normalize = source, "ensemble"
        tilt = sample_tilt_field(params, native_size, rng, normalize=normalize)  # type: ignore[arg-type]
        native_values.append(fold_fraction(tilt))
        if stored_size is not None:
            stored_values.append(fold_fraction(area_resize_field(tilt, stored_size)))
    native, native_err = _mean_and_stderr(native_values)
    stored = stored_err = None
    if stored_size is not None:
        stored, stored_err = _mean_and_stderr(stored_values)
    return FoldEstimate(
        native=native,
        native_stderr=native_err,
        stored=stored,
        stored_stderr=stored_err,
        fields=fields,
        native_size=(int(native_size[0]), int(native_size[1])),
        stored_size=None if stored_size is None else (int(stored_size[0]), int(stored_size[1])),
    )


def shard_fold_fractions(
    root: str | Path, fields: int = 4, seed: int = 0
) -> dict[str, FoldEstimate]:
    """Fold fractions of a shard folder's recipe at its native and stored sizes, per split.

    The recipe, native and stored sizes are those of the folder's manifest; splits of the same
    sizes share one estimate. Monte Carlo as :func:`estimate_fold_fraction`.

    Raises:
        turbsim.shards.ShardError: no readable manifest.
    """
    manifest = read_manifest(root)
    recipe = Recipe(manifest["recipe"])
    found: dict[tuple, FoldEstimate] = {}
    out: dict[str, FoldEstimate] = {}
    for split, native in sorted(manifest.get("native_sizes", {}).items()):
        stored = manifest.get("stored_sizes", {}).get(split, native)
        key = (tuple(native), tuple(stored))
        if key not in found:
            found[key] = estimate_fold_fraction(recipe, key[0], key[1], fields, seed)
        out[split] = found[key]
    return out
