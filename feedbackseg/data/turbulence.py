"""Online turbulence for training (``--turbulence online``): fresh distortion at every draw.

With ``turbulence = "online"`` the trainer reads the shards' *clean* training images (and their
labels), and every time a sample is drawn it distorts it afresh with
:class:`turbsim.augment.RandomTurbulence`, batched on the training device, by default with the
recipe recorded in the shards' manifest (``turbulence_recipe`` names another: a shipped turbsim
recipe or a TOML file). Validation stays on the stored distorted images, so runs with and without
online turbulence are scored on the same data.

Scale: the air acts at the camera's pixels. The shards were rendered from frames of the native
size N (manifest ``native_sizes``) and the trainer samples at the training size S (after
``height`` and any crop), so each sample's field is rendered for a frame of N * (S / resized
size) pixels and area-averaged to S (:mod:`turbsim.augment`, "Stored size").

Determinism: each sample's draw comes from its own ``torch.Generator`` seeded from
(seed, epoch, sample index) alone (:func:`sample_seed`), so a resumed run, any worker count and
any batch composition see the same distortion of a given sample in a given epoch; DDP ranks,
which draw disjoint indices, get different draws. The flow of that draw (the area-averaged
field, stored pixels) travels with the batch, so any diagnostic of R compares with the
displacement the image really has.

Why on the device: per sample the numpy path costs a native-size field (0.15 s at 1024x2048 on
2 CPU cores) in a DataLoader worker; batched torch on a GPU renders hundreds of fields per second,
and on the CPU the torch path is as fast per frame (``benchmarks/bench_augment.py``), so one path
serves both and the loader workers keep reading shards.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from feedbackseg.config import ConfigError, TrainConfig
from turbsim import shards

__all__ = ["OnlineTurbulence", "check_turbulence", "sample_seed"]

#: Spawn key that separates the turbulence streams from every other use of the run's seed.
_STREAM = 0x7475726275  # "turbu"


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The 63-bit seed of one sample's turbulence draw: a function of (seed, epoch, index) only.

    ``numpy.random.SeedSequence(seed, spawn_key=(_STREAM, epoch, index))``'s first state word.
    """
    sequence = np.random.SeedSequence(int(seed), spawn_key=(_STREAM, int(epoch), int(index)))
    return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))


def _manifest(root: str | Path) -> dict[str, Any]:
    try:
        return shards.read_manifest(root)
    except shards.ShardError as error:
        raise ConfigError(str(error), "shards") from None


def _recipe_source(config: TrainConfig, manifest: dict[str, Any]) -> Any:
    """What RandomTurbulence is built from: the named recipe or the manifest's."""
    if config.turbulence_recipe is not None:
        return config.turbulence_recipe
    recipe = manifest.get("recipe")
    if not isinstance(recipe, dict):
        raise ConfigError(
            f"{config.shards}: the manifest records no recipe; name one", "turbulence_recipe"
        )
    return recipe


def _native_size(config: TrainConfig, manifest: dict[str, Any]) -> tuple[int, int]:
    native = (manifest.get("native_sizes") or {}).get(config.train_split)
    if not native:
        raise ConfigError(
            f"{config.shards}: the manifest records no native size of split "
            f"{config.train_split!r} (needed to scale the online turbulence)",
            "turbulence",
        )
    return int(native[0]), int(native[1])


class OnlineTurbulence:
    """The online distortion of one run: ``(clean, epoch, indices) -> (distorted, flow)``.

    Args:
        config: the run's config (``turbulence_recipe``, ``seed``, ``train_split``, ``crop``).
        stored_size: (H, W) [px] of the stored training images.
        image_size: (H, W) [px] of the samples after ``height`` (before any crop).
        device: where the distortion runs (the training device).

    Raises:
        ConfigError: an unknown or invalid recipe, or one whose size does not fit the shards
            (key ``turbulence_recipe``); training images larger than the native frames (key
            ``height``).
    """

    def __init__(
        self,
        config: TrainConfig,
        stored_size: tuple[int, int],
        image_size: tuple[int, int],
        device: torch.device,
    ) -> None:
        from turbsim.augment import RandomTurbulence

        manifest = _manifest(config.shards)
        native = _native_size(config, manifest)
        sample = config.crop if config.crop is not None else image_size
        # a sample pixel covers native / image_size camera pixels on each axis
        self.native_size = (
            max(sample[0], round(sample[0] * native[0] / image_size[0])),
            max(sample[1], round(sample[1] * native[1] / image_size[1])),
        )
        try:  # RecipeError is a ValueError
            self.module = RandomTurbulence(
                _recipe_source(config, manifest),
                native_size=self.native_size,
                device=device,
                render=config.turbulence_render,
            )
        except (ValueError, TypeError) as error:
            raise ConfigError(str(error), "turbulence_recipe") from None
        if image_size[0] > native[0] or image_size[1] > native[1]:
            raise ConfigError(
                f"training images of {image_size[0]}x{image_size[1]} px are larger than the "
                f"native frames ({native[0]}x{native[1]}) of {config.shards}: online turbulence "
                "needs a resize down; use a smaller height",
                "height",
            )
        size = self.module.recipe.size if self.module.recipe is not None else None
        if size is not None and tuple(size) != tuple(stored_size):
            raise ConfigError(
                f"recipe {_name(self.module)} stores {size[0]}x{size[1]} px images, the shards "
                f"of {config.shards} hold {stored_size[0]}x{stored_size[1]}: its air is meant for "
                "other pixels (use a recipe of size 'native' or of the shards' size)",
                "turbulence_recipe",
            )
        self.seed = config.seed
        self.device = device

    def generators(self, epoch: int, indices: Sequence[int]) -> list[torch.Generator]:
        """One generator per sample, seeded by :func:`sample_seed`, on the distortion device."""
        out = []
        for index in indices:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(sample_seed(self.seed, epoch, int(index)))
            out.append(generator)
        return out

    def __call__(
        self, clean: Tensor, epoch: int, indices: Sequence[int] | Tensor
    ) -> tuple[Tensor, Tensor]:
        """Distort a batch of clean images (B, 3, H, W) float in [0, 1].

        Returns:
            (distorted (B, 3, H, W) like ``clean``, flow float32 (B, 2, H, W) [px]).
        """
        if isinstance(indices, Tensor):
            indices = indices.tolist()
        return self.module(clean, self.generators(epoch, indices))

    def describe(self) -> str:
        """One line for the training log."""
        n = self.native_size
        where = (
            "drawn at the training size with the area-averaged law"
            if self.module.render == "stored"
            else "rendered there, then area-averaged"
        )
        return (
            f"online turbulence: recipe {_name(self.module)}, fields of {n[0]}x{n[1]} native px "
            f"({where}), blur {self.module.blur}, fresh per (seed, epoch, sample)"
        )


def _name(module: Any) -> str:
    if module.recipe is None:
        return "(fixed parameters)"
    return repr(module.recipe.data.get("name", "?"))


def check_turbulence(
    config: TrainConfig, stored_size: tuple[int, int], image_size: tuple[int, int]
) -> None:
    """The start-up check of ``--turbulence online`` (nothing is written before it passes).

    Raises:
        ConfigError: see :class:`OnlineTurbulence`.
    """
    if config.turbulence == "online":
        OnlineTurbulence(config, stored_size, image_size, torch.device("cpu"))
