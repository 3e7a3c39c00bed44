"""Dataset recipes: what `turbsim generate` makes, resolved from defaults, a TOML file and flags.

A recipe fixes everything that determines the bytes of a generated dataset: the physics (each
parameter fixed or a range sampled per image), the splits, the stored size, the number of
distorted variants per source image, the shard size, the compression, the flow storage and the
root seed. Resolution order: :data:`DEFAULT_RECIPE` <- recipe file <- command-line overrides.
The resolved recipe is saved in the manifest together with its hash.

Types are strict, whatever the source: an integer key (``seed``, ``shard_size``, ``variants``)
takes an integer, a physics value a real number (an integer allowed), ``"LO:HI"``, a number
written as text (what the command line gives) or a two-element array of real numbers, a choice
or name a string; a boolean is never a number, and no value is rounded. Every error is one
line naming the source of the value at fault (the recipe file, or "command line") and its key;
a file must be UTF-8 TOML.

Ranges: a physics value may be ``"LO:HI"`` (or a two-element list). ``cn2`` ranges are sampled
log-uniformly (Cn2 spans decades), every other range uniformly. Draws of ``height_m`` and
``aperture_m``, the two parameters of rho = L0 / D, are then rounded to the nearest point of a
grid with 1 % steps in log space (:data:`RHO_GRID_STEP`), and the rounded value is the one the
sample records and is rendered with: every new rho costs a correlation-table integration
(~13 s, then cached on disk), so a dataset needs a few dozen of them instead of one per image.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.resources
import json
import math
import numbers
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from turbsim.errors import TurbsimError
from turbsim.physics.choices import BLUR_MODES, BORDERS, NORMALIZE_CHOICES, WAVES
from turbsim.physics.params import POSITIVE_FIELDS, REFERENCE_PARAMS, TurbulenceParams
from turbsim.shards.schema import (
    COMPRESSIONS,
    FLOW_CHOICES,
    FLOW_RESAMPLES,
    SPLITS,
)

#: TurbulenceParams fields that a recipe can fix or sample.
PHYSICS_KEYS: tuple[str, ...] = POSITIVE_FIELDS
#: Ranges of these keys are sampled log-uniformly; others uniformly.
LOG_UNIFORM_KEYS = frozenset({"cn2"})
#: Draws of these keys (they set rho = L0 / D) are rounded to the grid exp(k * RHO_GRID_STEP).
GRID_KEYS = frozenset({"height_m", "aperture_m"})
#: Step of that grid in ln (1 %).
RHO_GRID_STEP = 0.01

# The choice lists live in turbsim.shards.schema; these names are kept for their importers.
FLOW_STORAGE = FLOW_CHOICES
NORMALIZE = NORMALIZE_CHOICES
KNOWN_SPLITS = SPLITS

#: The documented default recipe (the reference camera of the original code: sigma_r 5.6 px).
DEFAULT_RECIPE: dict[str, Any] = {
    "name": "default",
    "description": "Reference camera of the Technion code (300 mm f/5.6, 4 um pixels), L = 2 km, "
    "h = 4 m, Cn2 = 1e-12: sigma_r = 5.6 px at native Cityscapes size.",
    "seed": 0,
    "splits": ["train", "val"],
    "size": "native",
    "shard_size": 32,
    "variants": 1,
    "compression": "gzip",
    "store_flow": "none",
    "border": "clamp",
    "normalize": "ensemble",
    "blur": "none",
    "flow_resample": "nearest",
    "physics": REFERENCE_PARAMS.to_dict(),
}

#: Keys added after datasets were written with their default in force: at that default they are
#: left out of :meth:`Recipe.digest`, so every older recipe keeps its digest (and its datasets
#: stay resumable); a resolved recipe (manifest, recipe.json) always states them.
OPTIONAL_DEFAULTS: dict[str, Any] = {"blur": "none", "flow_resample": "nearest"}

_TOP_KEYS = set(DEFAULT_RECIPE)

#: The recipe key of the input conventions (:meth:`Recipe.with_input`): set by the plan from the
#: command line (``--images``, ``--labels``, ``--label-map``), not a recipe-file key.
INPUT_KEY = "input"
_PHYSICS_ALL = set(PHYSICS_KEYS) | {"wave"}


class RecipeError(TurbsimError, ValueError):
    """A recipe file or override is invalid; the message is one line naming the source.

    Attributes:
        key: the recipe key at fault (e.g. ``"size"``, ``"cn2"``, ``"shard_size"``;
            ``"recipe"`` for the recipe file itself), whether its value came from a file or an
            override; None when no single key is at fault. A CLI maps it to its flag.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Range:
    """A physics value sampled per image: uniform on [lo, hi], or log-uniform for Cn2.

    With ``grid`` > 0 the draw is rounded to the nearest point exp(k * grid) (integer k) inside
    [lo, hi]; a range that holds no grid point gives its geometric mean.
    """

    lo: float
    hi: float
    log: bool
    grid: float = 0.0

    def sample(self, rng: np.random.Generator) -> float:
        """One draw [unit of the parameter] from ``rng``."""
        if self.lo == self.hi:
            return self.lo
        if self.log:
            value = float(math.exp(rng.uniform(math.log(self.lo), math.log(self.hi))))
        else:
            value = float(rng.uniform(self.lo, self.hi))
        return self.snap(value) if self.grid > 0 else value

    def snap(self, value: float) -> float:
        """``value`` rounded to the grid, kept inside [lo, hi]."""
        k_lo = math.ceil(math.log(self.lo) / self.grid - 1e-9)
        k_hi = math.floor(math.log(self.hi) / self.grid + 1e-9)
        if k_lo > k_hi:
            return math.sqrt(self.lo * self.hi)
        k = min(max(round(math.log(value) / self.grid), k_lo), k_hi)
        return min(max(math.exp(k * self.grid), self.lo), self.hi)


def _kind(value: Any) -> str:
    """What a value is, in TOML's words (for error messages)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, numbers.Integral):
        return "an integer"
    if isinstance(value, numbers.Real):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def _got(value: Any) -> str:
    return f"got {value!r} ({_kind(value)})"


def _is_integer(value: Any) -> bool:
    """An integer and not a boolean (TOML's ``true`` is no count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    """A real number (an integer allowed) and not a boolean."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _text_number(key: str, text: str, value: Any, source: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise RecipeError(
            f"{source}: {key} must be a number or LO:HI, got {value!r}", key
        ) from None


def _positive(key: str, v: float, value: Any, source: str) -> float:
    if not (math.isfinite(v) and v > 0):
        raise RecipeError(f"{source}: {key} must be finite and > 0, got {value!r}", key)
    return v


def _parse_physics_value(key: str, value: Any, source: str) -> float | Range:
    """A physics value: a real number (not a boolean), ``"LO:HI"``, ``[LO, HI]`` of real numbers,
    or (command-line text) a number written as a string. Nothing else is coerced."""
    if isinstance(value, str) and ":" in value:
        parts = value.split(":")
        if len(parts) != 2:
            raise RecipeError(f"{source}: {key} range must be LO:HI, got {value!r}", key)
        lo, hi = (_text_number(key, part, value, source) for part in parts)
    elif isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise RecipeError(f"{source}: {key} range must have two values, got {value!r}", key)
        if not all(_is_real(v) for v in value):
            raise RecipeError(f"{source}: {key} range values must be numbers, got {value!r}", key)
        lo, hi = float(value[0]), float(value[1])
    elif isinstance(value, str):
        return _positive(key, _text_number(key, value, value, source), value, source)
    elif _is_real(value):
        return _positive(key, float(value), value, source)
    else:
        raise RecipeError(f"{source}: {key} must be a number or LO:HI, {_got(value)}", key)
    for v in (lo, hi):
        _positive(key, v, value, source)
    if hi < lo:
        raise RecipeError(f"{source}: {key} range must have LO <= HI, got {value!r}", key)
    return Range(lo, hi, key in LOG_UNIFORM_KEYS, RHO_GRID_STEP if key in GRID_KEYS else 0.0)


def parse_size(value: Any, source: str = "size") -> tuple[int, int] | None:
    """ "native" -> None; "HxW" -> (H, W) [px], each >= 16."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "native"):
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2:
        if not all(_is_integer(v) for v in value):
            raise RecipeError(
                f"{source}: size [H, W] must be two integers, got {list(value)!r}", "size"
            )
        value = f"{value[0]}x{value[1]}"
    elif not isinstance(value, str):
        raise RecipeError(
            f"{source}: size must be 'native' or HxW (e.g. 512x1024), {_got(value)}", "size"
        )
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(value))
    if not m:
        raise RecipeError(
            f"{source}: size must be 'native' or HxW (e.g. 512x1024), got {value!r}", "size"
        )
    h, w = int(m.group(1)), int(m.group(2))
    if h < 16 or w < 16:
        raise RecipeError(f"{source}: size must be at least 16x16, got {value!r}", "size")
    return h, w


@dataclass(frozen=True)
class Recipe:
    """A resolved, validated recipe, parsed once into typed fields.

    ``data`` is the canonical JSON-able dict (what the manifest and ``recipe.json`` store and
    :meth:`digest` hashes); every other field is computed from it at construction, so workers
    never re-parse it per sample. Build one with :func:`resolve_recipe` (validates), or
    ``Recipe(data)`` from an already resolved dict (a manifest's ``recipe``).
    """

    data: dict[str, Any]
    #: Root seed of every per-sample stream (see turbsim.seeding).
    seed: int = field(init=False, compare=False, repr=False)
    #: Split names, in the order they are planned.
    splits: tuple[str, ...] = field(init=False, compare=False, repr=False)
    #: Stored (H, W) [px], or None for the native size.
    size: tuple[int, int] | None = field(init=False, compare=False, repr=False)
    #: Samples per shard.
    shard_size: int = field(init=False, compare=False, repr=False)
    #: Distorted variants per source image.
    variants: int = field(init=False, compare=False, repr=False)
    #: Shard compression, one of :data:`COMPRESSIONS`.
    compression: str = field(init=False, compare=False, repr=False)
    #: Flow storage ("int16", "float16"), or None when no flow is stored.
    store_flow: str | None = field(init=False, compare=False, repr=False)
    #: Warp border mode, one of :data:`BORDERS`.
    border: str = field(init=False, compare=False, repr=False)
    #: Field normalisation, one of :data:`NORMALIZE`.
    normalize: str = field(init=False, compare=False, repr=False)
    #: Each physics key -> a fixed value, a :class:`Range`, or the wave name (read-only).
    physics: Mapping[str, float | Range | str] = field(init=False, compare=False, repr=False)
    #: Blur after the tilt warp, one of :data:`BLUR_MODES` ("none": tilt only).
    blur: str = field(init=False, compare=False, repr=False)
    #: How a stored flow is resized to the stored size, one of :data:`FLOW_RESAMPLES`.
    flow_resample: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        data = self.data
        flow = str(data["store_flow"])
        physics: dict[str, float | Range | str] = {
            key: _parse_physics_value(key, data["physics"][key], "recipe") for key in PHYSICS_KEYS
        }
        physics["wave"] = str(data["physics"]["wave"])
        typed = {
            "seed": int(data["seed"]),
            "splits": tuple(data["splits"]),
            "size": parse_size(data["size"]),
            "shard_size": int(data["shard_size"]),
            "variants": int(data["variants"]),
            "compression": str(data["compression"]),
            "store_flow": None if flow == "none" else flow,
            "border": str(data["border"]),
            "normalize": str(data["normalize"]),
            "physics": MappingProxyType(physics),
            "blur": str(data.get("blur", OPTIONAL_DEFAULTS["blur"])),
            "flow_resample": str(data.get("flow_resample", OPTIONAL_DEFAULTS["flow_resample"])),
        }
        for name, value in typed.items():
            object.__setattr__(self, name, value)

    def __reduce__(self) -> tuple[type[Recipe], tuple[dict[str, Any]]]:
        # pickled (to workers) as its canonical dict; the typed fields are recomputed there
        return (Recipe, (self.data,))

    def digest(self) -> str:
        """sha256 of the canonical JSON of the recipe (names and descriptions included).

        Keys of :data:`OPTIONAL_DEFAULTS` at their default are left out, so the digest of a
        recipe that predates them is unchanged.
        """
        data = {k: v for k, v in self.data.items() if OPTIONAL_DEFAULTS.get(k, object()) != v}
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    @property
    def input(self) -> Mapping[str, Any] | None:
        """How the input is read when it is not a Cityscapes tree (``data["input"]``), e.g.
        ``{"layout": "image-folder", "label_map": "trainids"}``; None for Cityscapes."""
        value = self.data.get(INPUT_KEY)
        return None if value is None else MappingProxyType(value)

    def with_input(self, value: Mapping[str, Any]) -> Recipe:
        """This recipe with ``data["input"] = value``: the input conventions that set the bytes
        (an image folder's label map) join the recipe, so its digest, which resume compares,
        tells them apart. A Cityscapes recipe has no such key, so its digest is unchanged."""
        return Recipe({**self.data, INPUT_KEY: copy.deepcopy(dict(value))})

    def sample_params(self, rng: np.random.Generator) -> TurbulenceParams:
        """Draw one image's physical parameters (fixed values stay fixed; ranges are sampled in
        the fixed order of :data:`PHYSICS_KEYS`, so the draw is reproducible)."""
        kwargs: dict[str, Any] = {}
        for key, value in self.physics.items():
            kwargs[key] = value.sample(rng) if isinstance(value, Range) else value
        return TurbulenceParams(**kwargs)

    def is_fixed_physics(self) -> bool:
        """Whether no physics value is a range (every sample has the same parameters)."""
        return not any(isinstance(v, Range) for v in self.physics.values())


def builtin_recipe_dir() -> Path:
    """The folder of the shipped recipes: the repository's ``data_manifests/``, installed as the
    package ``turbsim_data_manifests`` (editable or wheel)."""
    return Path(str(importlib.resources.files("turbsim_data_manifests")))


def builtin_recipes() -> list[str]:
    """Names of the recipes shipped in ``data_manifests/``."""
    folder = builtin_recipe_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def locate_recipe(name_or_path: str | Path) -> Path:
    """A path to an existing TOML file, or the name of a shipped recipe (e.g. ``bmvc2020``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = builtin_recipe_dir() / f"{name_or_path}.toml"
    if path.suffix == "" and candidate.is_file():
        return candidate
    known = ", ".join(builtin_recipes()) or "none found"
    raise RecipeError(f"{name_or_path}: recipe file not found (shipped recipes: {known})", "recipe")


def load_recipe_file(path: Path) -> dict[str, Any]:
    """Read a recipe TOML (top-level keys as in :data:`DEFAULT_RECIPE`, a [physics] table).

    Raises:
        RecipeError: (key ``"recipe"``) the file cannot be read, is not UTF-8 text or not TOML.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe ({exc.strerror or exc})", "recipe") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "a recipe is a UTF-8 TOML file",
            "recipe",
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: invalid TOML ({exc})", "recipe") from None


def _merge(
    base: dict[str, Any], update: Mapping[str, Any], source: str, origins: dict[str, str]
) -> None:
    """Merge ``update`` into ``base``; ``origins`` records which source set each key."""
    for key, value in update.items():
        if key == "physics":
            if not isinstance(value, Mapping):
                raise RecipeError(f"{source}: [physics] must be a table", "physics")
            for pkey, pvalue in value.items():
                if pkey not in _PHYSICS_ALL:
                    raise RecipeError(
                        f"{source}: unknown physics key {pkey!r} (known: {sorted(_PHYSICS_ALL)})"
                    )
                base["physics"][pkey] = pvalue
                origins[pkey] = source
        elif key in _TOP_KEYS:
            base[key] = value
            origins[key] = source
        else:
            raise RecipeError(f"{source}: unknown recipe key {key!r} (known: {sorted(_TOP_KEYS)})")


def _canonical_physics(key: str, value: Any, source: str) -> Any:
    parsed = _parse_physics_value(key, value, source)
    if isinstance(parsed, Range):
        return [parsed.lo, parsed.hi]
    return parsed


def resolve_recipe(
    recipe: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Recipe:
    """Defaults <- recipe file (a path or a shipped name) <- overrides; validated.

    ``overrides`` uses the recipe's keys; physics keys may be given at top level or in a
    ``physics`` mapping. ``None`` values are ignored (flags not given). Types are strict: an
    integer key (seed, shard_size, variants) takes an integer, a physics value a real number,
    ``LO:HI`` or ``[LO, HI]``; a boolean is never a number. An error names the source of the
    value at fault (the file, or "command line") and the key.
    """
    data = copy.deepcopy(DEFAULT_RECIPE)
    origins: dict[str, str] = {}
    if recipe is not None:
        path = locate_recipe(recipe)
        _merge(data, load_recipe_file(path), str(path), origins)
    if overrides:
        flat = {k: v for k, v in overrides.items() if v is not None and k != "physics"}
        phys = {k: flat.pop(k) for k in list(flat) if k in _PHYSICS_ALL}
        phys.update({k: v for k, v in (overrides.get("physics") or {}).items() if v is not None})
        _merge(data, {**flat, "physics": phys}, "command line", origins)
    return Recipe(_validate(data, origins))


def _integer(data: Mapping[str, Any], key: str, minimum: int, source: str) -> int:
    value = data[key]
    if not _is_integer(value):
        raise RecipeError(f"{source}: {key} must be an integer, {_got(value)}", key)
    if int(value) < minimum:
        raise RecipeError(f"{source}: {key} must be >= {minimum}, got {value}", key)
    return int(value)


def _text(data: Mapping[str, Any], key: str, source: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise RecipeError(f"{source}: {key} must be a string, {_got(value)}", key)
    return value


def _validate_splits(value: Any, source: str) -> list[str]:
    splits = value
    if isinstance(splits, str):
        splits = [s.strip() for s in splits.split(",") if s.strip()]
    if (
        not isinstance(splits, (list, tuple))
        or not splits
        or not all(isinstance(s, str) and re.fullmatch(r"[A-Za-z0-9_]+", s) for s in splits)
    ):
        raise RecipeError(f"{source}: splits must be names like train,val; {_got(value)}", "splits")
    if len(set(splits)) != len(splits):
        raise RecipeError(f"{source}: splits repeat: {list(splits)!r}", "splits")
    return list(splits)


def _validate(data: dict[str, Any], origins: Mapping[str, str]) -> dict[str, Any]:
    def source(key: str) -> str:
        return origins.get(key, "defaults")

    out = dict(data)
    out["seed"] = _integer(data, "seed", 0, source("seed"))
    out["splits"] = _validate_splits(data["splits"], source("splits"))
    size = parse_size(data["size"], source("size"))
    out["size"] = "native" if size is None else f"{size[0]}x{size[1]}"
    for key in ("shard_size", "variants"):
        out[key] = _integer(data, key, 1, source(key))
    for key, choices in (
        ("blur", BLUR_MODES),
        ("compression", COMPRESSIONS),
        ("store_flow", FLOW_STORAGE),
        ("border", BORDERS),
        ("normalize", NORMALIZE),
        ("flow_resample", FLOW_RESAMPLES),
    ):
        value = data.get(key, OPTIONAL_DEFAULTS.get(key))
        if not isinstance(value, str) or value not in choices:
            raise RecipeError(
                f"{source(key)}: {key} must be one of {', '.join(choices)}; got {value!r}", key
            )
        out[key] = value
    phys = dict(data["physics"])
    for key in PHYSICS_KEYS:
        phys[key] = _canonical_physics(key, phys[key], source(key))
    if not isinstance(phys["wave"], str) or phys["wave"] not in WAVES:
        raise RecipeError(
            f"{source('wave')}: wave must be one of {', '.join(WAVES)}; got {phys['wave']!r}",
            "wave",
        )
    out["physics"] = phys
    out["name"] = _text(data, "name", source("name"))
    out["description"] = _text(data, "description", source("description"))
    # the fixed-value case must make a valid TurbulenceParams (catches e.g. nothing today, but
    # keeps validation in one place if the params grow rules)
    try:
        Recipe(out).sample_params(np.random.default_rng(0))
    except ValueError as exc:
        key = getattr(exc, "key", None)
        raise RecipeError(f"{source(key or '')}: {exc}", key) from None
    return out


def recipe_to_toml(recipe: Recipe) -> str:
    """The resolved recipe as TOML text (for --dry-run and for users to save and edit)."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return json.dumps(str(v))

    lines = [f"{k} = {fmt(v)}" for k, v in recipe.data.items() if k not in ("physics", INPUT_KEY)]
    lines.append("")
    lines.append("[physics]")
    lines += [f"{k} = {fmt(v)}" for k, v in recipe.data["physics"].items()]
    if recipe.input is not None:
        lines.append("")
        lines.append(
            "# input: from --images/--labels/--label-map (not a recipe-file key); in the hash"
        )
        lines.append(f"# input = {json.dumps(dict(recipe.input), sort_keys=True)}")
    return "\n".join(lines) + "\n"
