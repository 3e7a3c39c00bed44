"""The physics model's choices (standard library only): wave model, field normalisation, warp
border, blur.

The physics modules (params, theory, field, warp, blur, augment) take their choice lists from
here; the recipe, the CLI and the shard schema (which records the choices a dataset was made
with) import them from here too, so that no physics module depends on the storage layer.
"""

from __future__ import annotations

__all__ = ["BLUR_MODES", "BORDERS", "NORMALIZE_CHOICES", "WAVES"]

#: Wave models of the turbulence theory (turbsim.physics.theory).
WAVES: tuple[str, ...] = ("spherical", "plane")
#: Field normalisations (turbsim.physics.field): ensemble physics, or per-field std as the BMVC
#: scripts.
NORMALIZE_CHOICES: tuple[str, ...] = ("ensemble", "per-field")
#: Warp border modes (physics.warp): clamp, reflect (OpenCV REFLECT_101), zero (Matlab interp2).
BORDERS: tuple[str, ...] = ("clamp", "reflect", "zero")
#: Blur modes (physics.blur; recipe key ``blur``): tilt only, or the mean short-exposure blur.
BLUR_MODES: tuple[str, ...] = ("none", "short-exposure")
