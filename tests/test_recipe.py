"""Recipes: resolution order, validation, shipped recipes, hashing, TOML round trip."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import tomllib

import numpy as np
import pytest

from turbsim.physics.theory import sigma_r_px
from turbsim.pipeline.recipe import (
    DEFAULT_RECIPE,
    RHO_GRID_STEP,
    Range,
    Recipe,
    RecipeError,
    builtin_recipes,
    recipe_to_toml,
    resolve_recipe,
)

#: recipe digests recorded from the code before the refactor (issue 10)
DEFAULT_DIGEST = "8d9b796123efcade4a337d6563ce69f0d73ab29ac17de7ce70517a85c66da430"
RANGED_DIGEST = "61e38fcbc6dc5ce22ef29daa04d42d0f212c462d5f4ce1debc0e32a8d0faa90b"


def test_defaults_are_the_reference_camera() -> None:
    r = resolve_recipe()
    p = r.sample_params(np.random.default_rng(0))
    assert sigma_r_px(p) == pytest.approx(5.597, abs=5e-4)
    assert r.size is None and r.splits == ("train", "val") and r.store_flow is None
    assert r.is_fixed_physics()


@pytest.mark.parametrize(("name", "sigma"), [("weak", 1.77), ("moderate", 3.07), ("strong", 5.60)])
def test_named_strengths_state_their_sigma(name: str, sigma: float) -> None:
    r = resolve_recipe(name)
    assert sigma_r_px(r.sample_params(np.random.default_rng(0))) == pytest.approx(sigma, abs=0.005)
    assert f"{sigma:.2f} px" in r.data["description"]


def test_bmvc2020_recipe() -> None:
    assert {"bmvc2020", "weak", "moderate", "strong"} <= set(builtin_recipes())
    r = resolve_recipe("bmvc2020")
    assert r.normalize == "per-field" and r.data["physics"]["cn2"] == 1e-12
    assert r.data["physics"]["path_length_m"] == 2000.0


def test_flags_override_recipe_which_overrides_defaults(tmp_path) -> None:
    f = tmp_path / "r.toml"
    f.write_text("seed = 7\nshard_size = 5\n[physics]\ncn2 = 2e-13\npath_length_m = 3000\n")
    r = resolve_recipe(f, {"seed": 9, "cn2": None, "path_length_m": "2000:4000"})
    assert r.seed == 9  # flag wins
    assert r.shard_size == 5  # recipe file wins over defaults
    assert r.data["physics"]["cn2"] == 2e-13  # a flag left unset (None) does not override
    assert r.data["physics"]["path_length_m"] == [2000.0, 4000.0]
    assert r.compression == DEFAULT_RECIPE["compression"]


def test_ranges_are_sampled_reproducibly_and_cn2_log_uniformly() -> None:
    r = resolve_recipe(None, {"cn2": "1e-14:1e-12", "path_length_m": "2000:10000"})
    phys = r.physics
    assert phys["cn2"] == Range(1e-14, 1e-12, log=True)
    assert phys["path_length_m"] == Range(2000.0, 10000.0, log=False)
    rng = np.random.default_rng(3)
    draws = [r.sample_params(rng) for _ in range(4000)]
    logs = np.log10([p.cn2 for p in draws])
    lengths = np.array([p.path_length_m for p in draws])
    assert logs.min() >= -14 and logs.max() <= -12 and lengths.min() >= 2000
    # log-uniform: log10(cn2) uniform on [-14, -12]: mean -13, var 1/3; stderr from n = 4000
    n = len(draws)
    assert abs(logs.mean() + 13) < 4 * math.sqrt(1 / 3 / n)
    assert abs(lengths.mean() - 6000) < 4 * 8000 / math.sqrt(12 * n)
    again = [resolve_recipe(None, {"cn2": "1e-14:1e-12"}).sample_params(np.random.default_rng(3))]
    assert again[0].cn2 == draws[0].cn2


def test_rho_ranges_are_drawn_on_a_one_percent_log_grid() -> None:
    """height and aperture set rho = L0 / D (one correlation table each): their draws are
    rounded to exp(k / 100), so 3..5 m gives at most 52 rho values, not one per image; the
    rounded value is what the sample records. Path length stays continuous."""
    r = resolve_recipe(
        None, {"height_m": "3:5", "aperture_m": "0.05:0.06", "path_length_m": "2000:3000"}
    )
    assert r.physics["height_m"] == Range(3.0, 5.0, log=False, grid=RHO_GRID_STEP)
    rng = np.random.default_rng(5)
    draws = [r.sample_params(rng) for _ in range(4000)]
    heights = np.array([p.height_m for p in draws])
    apertures = np.array([p.aperture_m for p in draws])
    for values, lo, hi in ((heights, 3.0, 5.0), (apertures, 0.05, 0.06)):
        assert values.min() >= lo and values.max() <= hi
        k = np.log(values) / RHO_GRID_STEP
        np.testing.assert_allclose(k, np.round(k), atol=1e-6)  # on the grid
        assert len(set(values)) <= math.floor(math.log(hi / lo) / RHO_GRID_STEP) + 1
    # still uniform on [3, 5]: mean 4, sd 2 / sqrt(12); the rounding (<= 0.5 % of the value,
    # symmetric inside the range) moves the mean by far less than the standard error
    n = len(draws)
    assert abs(heights.mean() - 4.0) < 4 * 2 / math.sqrt(12 * n)
    # rho = 0.4 h / D lies on one lattice in log rho; the table key rounds away the float
    # noise of equal ratios reached from different (h, D) pairs
    assert len({p.shape_key()[1] for p in draws}) <= 52 + 19 - 1
    assert len({p.path_length_m for p in draws}) == n  # not rounded
    assert Range(4.0, 4.01, log=False, grid=RHO_GRID_STEP).sample(rng) == pytest.approx(
        math.sqrt(4.0 * 4.01)
    )  # no grid point inside: the geometric mean


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"cn2": -1e-12}, "cn2"),
        ({"cn2": 0}, "cn2"),
        ({"path_length_m": "10:5"}, "LO <= HI"),
        ({"aperture_m": "a:b"}, "aperture_m"),
        ({"wavelength_m": "nan"}, "wavelength_m"),
        ({"size": "12x40"}, "size"),
        ({"size": "big"}, "size"),
        ({"shard_size": 0}, "shard_size"),
        ({"variants": -2}, "variants"),
        ({"compression": "zstd"}, "compression"),
        ({"store_flow": "float32"}, "store_flow"),
        ({"border": "wrap"}, "border"),
        ({"splits": "train,train"}, "splits"),
        ({"splits": "../x"}, "splits"),
        ({"seed": -1}, "seed"),
        ({"wave": "cylinder"}, "wave"),
    ],
)
def test_unphysical_or_bad_values_are_refused(overrides: dict, needle: str) -> None:
    with pytest.raises(RecipeError, match=needle) as info:
        resolve_recipe(None, overrides)
    assert "\n" not in str(info.value)
    assert info.value.key == next(iter(overrides))  # the recipe key at fault, for a CLI
    assert "--" not in str(info.value)  # library words, not flags


def test_file_errors_name_the_recipe_key(tmp_path) -> None:
    with pytest.raises(RecipeError) as info:
        resolve_recipe("nope")
    assert info.value.key == "recipe"
    bad = tmp_path / "bad.toml"
    bad.write_text("[physics]\ncn2 = -3\n")
    with pytest.raises(RecipeError) as info:
        resolve_recipe(bad)
    assert info.value.key == "cn2"
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("sead = 3\n")
    with pytest.raises(RecipeError) as info:
        resolve_recipe(unknown)
    assert info.value.key is None  # no option of that name


def test_recipe_is_frozen_typed_and_parsed_once() -> None:
    r = resolve_recipe("bmvc2020", {"size": "256x512", "cn2": "3e-13:1e-12", "store_flow": "int16"})
    assert r.size == (256, 512) and r.seed == 2020 and r.variants == 1
    assert r.store_flow == "int16" and r.compression == "gzip" and r.border == "clamp"
    assert r.physics["cn2"] == Range(3e-13, 1e-12, log=True)
    assert r.physics is r.physics  # computed at construction, not per access
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.seed = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.physics["cn2"] = 1e-13  # type: ignore[index]
    again = pickle.loads(pickle.dumps(r))  # what executors send to workers
    assert again == r and again.physics == r.physics and again.size == r.size
    assert Recipe(r.data) == r and Recipe(r.data).digest() == r.digest()


def test_resolved_recipe_bytes_are_unchanged() -> None:
    """Digests recorded before Recipe became a typed dataclass: same canonical JSON."""
    default = resolve_recipe()
    assert default.digest() == DEFAULT_DIGEST
    assert json.dumps(default.data, sort_keys=True).startswith('{"blur": "none", "border": "clamp"')
    ranged = resolve_recipe(
        None,
        {"seed": 9, "cn2": "3e-13:1e-12", "store_flow": "int16", "size": "32x64", "variants": 2},
    )
    assert ranged.digest() == RANGED_DIGEST


def test_choice_lists_come_from_the_schema() -> None:
    from turbsim.pipeline.recipe import BORDERS, COMPRESSIONS, FLOW_STORAGE, KNOWN_SPLITS, NORMALIZE
    from turbsim.shards import schema

    assert COMPRESSIONS is schema.COMPRESSIONS and BORDERS is schema.BORDERS
    assert FLOW_STORAGE is schema.FLOW_CHOICES and NORMALIZE is schema.NORMALIZE_CHOICES
    assert KNOWN_SPLITS is schema.SPLITS


def test_bad_recipe_files_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = [\n")
    with pytest.raises(RecipeError, match="bad.toml"):
        resolve_recipe(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("sead = 3\n")
    with pytest.raises(RecipeError, match="unknown.toml.*sead"):
        resolve_recipe(unknown)
    with pytest.raises(RecipeError, match="nope.*not found"):
        resolve_recipe("nope")
    phys = tmp_path / "phys.toml"
    phys.write_text("[physics]\ncn2 = -3\n")
    with pytest.raises(RecipeError, match="phys.toml.*cn2"):
        resolve_recipe(phys)


def test_hash_and_toml_round_trip(tmp_path) -> None:
    r = resolve_recipe("bmvc2020", {"size": "256x512", "cn2": "3e-13:1e-12"})
    text = recipe_to_toml(r)
    tomllib.loads(text)  # valid TOML
    f = tmp_path / "saved.toml"
    f.write_text(text)
    again = resolve_recipe(f)
    assert again.data == r.data and again.digest() == r.digest()
    assert resolve_recipe("bmvc2020").digest() != r.digest()
    assert len(r.digest()) == 64


def test_blur_key_is_stated_but_keeps_older_digests() -> None:
    """Issue 13: the resolved recipe says blur = none, yet a recipe written before the key
    existed (a manifest without it) has the same digest, so its datasets stay resumable."""
    default = resolve_recipe()
    assert default.data["blur"] == "none" and default.blur == "none"
    older = {k: v for k, v in default.data.items() if k != "blur"}
    assert Recipe(older).blur == "none" and Recipe(older).digest() == default.digest()
    blurred = resolve_recipe(None, {"blur": "short-exposure"})
    assert blurred.blur == "short-exposure" and blurred.digest() != default.digest()
    assert 'blur = "short-exposure"' in recipe_to_toml(blurred)
    with pytest.raises(RecipeError, match="blur must be one of none, short-exposure"):
        resolve_recipe(None, {"blur": "gaussian"})
    assert resolve_recipe("strong-blur").blur == "short-exposure"
