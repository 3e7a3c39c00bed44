"""The one seeding scheme (turbsim.seeding): fixed streams for known names, forever."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from turbsim.seeding import (
    SPLIT_CODES,
    sample_seed_sequence,
    scene_seed_sequence,
    seed_sequence,
    split_code,
    stable_hash,
)

STEM = "aachen_000000_000019"


def test_stable_hash_fixed_values() -> None:
    """The per-sample seed's key of a Cityscapes stem: a fixed value (datasets depend on it);
    sha256("aachen_000000_000019") starts with 9bd5301e369d2acb."""
    assert stable_hash(STEM) == 0x9BD5301E369D2ACB == 11228934152241621707
    assert stable_hash("aachen_000000_000020") != stable_hash(STEM)
    assert 0 <= stable_hash("") < 2**64


def test_split_codes() -> None:
    assert SPLIT_CODES == {"train": 0, "val": 1, "test": 2}
    assert [split_code(s) for s in ("train", "val", "test")] == [0, 1, 2]
    assert split_code("extra") == zlib.crc32(b"extra") + 16 == 1295977845


def test_sample_stream_of_a_known_stem_is_unchanged() -> None:
    """Recorded from turbsim.generate before the scheme moved to turbsim.seeding."""
    seq = sample_seed_sequence(5, "val", STEM, 1)
    assert seq.entropy == 5 and seq.spawn_key == (1, 11228934152241621707, 1)
    assert seq.generate_state(4).tolist() == [3388062438, 828713519, 32793496, 2514139300]
    draws = np.random.default_rng(sample_seed_sequence(5, "val", STEM, 1)).integers(2**63, size=2)
    assert draws.tolist() == [1550730411162497163, 2513236961646747537]


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        ("train", [2632170186474077449, 575452636571075316]),
        ("val", [914250769917853279, 4412729816041590096]),
        ("test", [3481727933015368028, 3119887703013478580]),
    ],
)
def test_scene_stream_is_unchanged(split: str, expected: list[int]) -> None:
    """Recorded from turbsim.synthetic.scene_rng before it used turbsim.seeding."""
    seq = scene_seed_sequence(7, split, 2)
    assert seq.spawn_key == (stable_hash(split), 2)
    assert np.random.default_rng(seq).integers(2**63, size=2).tolist() == expected


def test_streams_differ_by_every_name_and_agree_with_the_generic_form() -> None:
    base = sample_seed_sequence(0, "train", STEM, 0).generate_state(2).tolist()
    for other in (
        sample_seed_sequence(1, "train", STEM, 0),
        sample_seed_sequence(0, "val", STEM, 0),
        sample_seed_sequence(0, "train", "aachen_000000_000020", 0),
        sample_seed_sequence(0, "train", STEM, 1),
    ):
        assert other.generate_state(2).tolist() != base
    generic = seed_sequence(0, split_code("train"), stable_hash(STEM), 0)
    assert generic.generate_state(2).tolist() == base
