"""The one seeding scheme of turbsim: every per-sample and per-scene stream from one root seed.

Every random stream is ``numpy.random.SeedSequence(root_seed, spawn_key=(code, *keys))``: a
function of the root seed and of *names* (split, Cityscapes stem, variant or scene index) only,
never of the order, the worker or the shard a sample is rendered in. So any sample can be
recomputed alone (previews, audits) and a dataset is bit-identical whatever the worker count,
shard size or resumption.

Two users, two split codes (both fixed forever: changing one changes every byte):

- generated samples (:func:`sample_seed_sequence`):
  ``spawn_key = (split_code(split), stable_hash(stem), variant)`` with :data:`SPLIT_CODES`
  (train 0, val 1, test 2, any other name ``crc32(name) + 16``);
- synthetic scenes (:func:`scene_seed_sequence`, turbsim.sources.synthetic):
  ``spawn_key = (stable_hash(split), index)``.

numpy and the standard library only.
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np

from turbsim.shards.schema import SPLITS

#: Split codes of generated samples; other split names use ``crc32(name) + 16``.
SPLIT_CODES: dict[str, int] = {name: code for code, name in enumerate(SPLITS)}

#: The scheme of generated samples in words (stored in every manifest's ``seeding`` key).
SEEDING_SCHEME = (
    "numpy SeedSequence(root_seed, spawn_key=(split_code, stable_stem_hash(stem), variant)) "
    "spawned into 2 children: [0] draws the physical parameters, [1] the tilt field; "
    "split_code train=0 val=1 test=2 else crc32(split)+16; stable_stem_hash = first 8 bytes "
    "of sha256(stem), big-endian"
)


def stable_hash(text: str) -> int:
    """A 64-bit hash of a string, identical in every process and on every platform.

    Unlike ``hash()``, it is not salted per process.

    Args:
        text: e.g. the Cityscapes stem "aachen_000000_000019" or a split name.

    Returns:
        The first 8 bytes of SHA-256 of the UTF-8 encoded text, big-endian, in [0, 2**64).
    """
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def split_code(split: str) -> int:
    """Spawn-key code of a split of generated samples: :data:`SPLIT_CODES` or crc32 + 16."""
    return SPLIT_CODES.get(split, zlib.crc32(split.encode()) + 16)


def seed_sequence(root_seed: int, code: int, *keys: int) -> np.random.SeedSequence:
    """The scheme itself: ``SeedSequence(root_seed, spawn_key=(code, *keys))``.

    Args:
        root_seed: the run's root seed, >= 0.
        code: the split's code (see the module docstring for the two codings).
        keys: further non-negative integers naming the stream (stem hash, variant, index).
    """
    return np.random.SeedSequence(root_seed, spawn_key=(int(code), *(int(k) for k in keys)))


def sample_seed_sequence(
    root_seed: int, split: str, stem: str, variant: int
) -> np.random.SeedSequence:
    """The seed of one generated sample: a function of (root seed, split, stem, variant) only.

    ``generate`` spawns it into 2 children: [0] draws the physical parameters, [1] the field.
    """
    return seed_sequence(root_seed, split_code(split), stable_hash(stem), variant)


def scene_seed_sequence(root_seed: int, split: str, index: int) -> np.random.SeedSequence:
    """The seed of synthetic scene ``index`` of ``split``: key ``(stable_hash(split), index)``."""
    return seed_sequence(root_seed, stable_hash(split), index)
