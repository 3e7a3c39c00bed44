"""Label maps: the class ids of a folder's label PNGs -> the 19 Cityscapes trainIds (255 ignore).

``turbsim generate --images DIR --labels DIR --label-map NAME|FILE`` reads each label PNG (8- or
16-bit, single channel) and maps every pixel value with one :class:`LabelMap`:

- ``trainids`` (the default): the files hold trainIds already; 0 .. 18 and 255 are kept, any
  other value is an error naming the file and the value (a folder of labelIds read as trainIds
  would otherwise be silently wrong: labelId 7, road, is trainId 7, traffic sign).
- ``cityscapes``: official Cityscapes labelIds 0 .. 33 (and -1, licence plate, stored as 255 in
  8-bit files), mapped with the table of cityscapesScripts ``helpers/labels.py``: every value
  0 .. 255 without a trainId (void classes) -> 255; a value above 255 (16-bit files) is an error.
- a JSON file ``{"0": 255, "7": 0, "8": 1, ...}``: source value -> trainId 0 .. 18 or 255. A value
  the file does not list is an error naming the label file and the value, unless the file has a
  ``"default"`` key (e.g. ``"default": 255``), which every unlisted value then gets.

A map is recorded in the recipe (``input.label_map``, part of the recipe hash: a resume with
another map is refused) by its name or, for a file, by its content (:meth:`LabelMap.recipe_value`),
never by its path. numpy and the standard library only.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from turbsim.errors import TurbsimError
from turbsim.shards.schema import CITYSCAPES_TABLE, IGNORE_LABEL, NUM_CLASSES

#: The built-in maps, by name; the first is the default.
BUILTIN_LABEL_MAPS: tuple[str, ...] = ("trainids", "cityscapes")
#: The default of ``--label-map`` when ``--labels`` is given.
DEFAULT_LABEL_MAP = "trainids"
#: Largest value a label PNG can hold (16-bit).
MAX_LABEL_VALUE = 65535
#: The trainIds a map may produce: 0 .. 18 and 255.
TRAIN_IDS: frozenset[int] = frozenset([*range(NUM_CLASSES), IGNORE_LABEL])
#: Marks an unmapped value in a lookup table.
_UNMAPPED = -1
#: The unmapped values a message lists at most.
_SHOWN_VALUES = 5


class LabelMapError(TurbsimError, ValueError):
    """A label map file is invalid, or a label holds a value its map does not list.

    The message is one line naming the file. Attributes:
        key: ``"label_map"`` (the option at fault, for a CLI to name its flag) for a bad map
            file; None for a label file whose content the map does not cover.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key

    def __reduce__(self) -> tuple:
        # keep the key across process boundaries (worker pools)
        return (type(self), (str(self), self.key))


@dataclass(frozen=True)
class LabelMap:
    """A map of label-file values to trainIds.

    Attributes:
        name: ``"trainids"``, ``"cityscapes"``, or ``"file"``.
        table: (source value, trainId) pairs, sorted by source value.
        default: the trainId of every value not in ``table``; None: such a value is an error.
        origin: where a file map was read from (for messages and the manifest; not hashed).
    """

    name: str
    table: tuple[tuple[int, int], ...]
    default: int | None = None
    origin: str = ""

    def recipe_value(self) -> str | dict[str, Any]:
        """What the recipe records: the name of a built-in map, the content of a file's."""
        if self.name in BUILTIN_LABEL_MAPS:
            return self.name
        value: dict[str, Any] = {"table": [list(pair) for pair in self.table]}
        if self.default is not None:
            value["default"] = self.default
        return value

    def describe(self) -> str:
        """One line for plans and messages, e.g. ``trainids`` or ``file map.json (12 values)``."""
        if self.name in BUILTIN_LABEL_MAPS:
            return self.name
        rest = "" if self.default is None else f", others -> {self.default}"
        return f"file {self.origin} ({len(self.table)} values{rest})"

    def apply(self, label: np.ndarray, path: Path | str) -> np.ndarray:
        """Map a decoded label image to trainIds.

        Args:
            label: uint8 or uint16 (H, W), the values of a label PNG.
            path: the label file (for the error message).

        Returns:
            uint8 (H, W): trainIds 0 .. 18, 255 = ignore.

        Raises:
            LabelMapError: naming the file and the values the map does not list.
        """
        lut = _lookup(self.table, self.default, 256 if label.dtype == np.uint8 else 65536)
        mapped = lut[label]
        bad = mapped < 0
        if bad.any():
            values = np.unique(label[bad])
            shown = ", ".join(str(int(v)) for v in values[:_SHOWN_VALUES])
            more = (
                f" (and {len(values) - _SHOWN_VALUES} more)" if len(values) > _SHOWN_VALUES else ""
            )
            raise LabelMapError(
                f"{path}: label value{'s' * (len(values) > 1)} {shown}{more} not in "
                f"--label-map {self.describe()}{_hint(self, values)}"
            )
        return mapped.astype(np.uint8)


def _hint(label_map: LabelMap, values: np.ndarray) -> str:
    """A suggestion for the usual mistakes (labelIds read as trainIds, a file without default)."""
    if label_map.name == "trainids" and int(values.max()) <= 33:
        return "; labelIds 0..33? use --label-map cityscapes"
    if label_map.name == "file":
        return '; list them in the map, or add "default": 255'
    return ""


@functools.lru_cache(maxsize=8)
def _lookup(table: tuple[tuple[int, int], ...], default: int | None, size: int) -> np.ndarray:
    """int16 (size,): the trainId of each value, :data:`_UNMAPPED` where there is none."""
    lut = np.full(size, _UNMAPPED if default is None else default, np.int16)
    for value, train_id in table:
        if value < size:
            lut[value] = train_id
    lut.flags.writeable = False
    return lut


def builtin_label_map(name: str) -> LabelMap:
    """The built-in map ``name`` (one of :data:`BUILTIN_LABEL_MAPS`)."""
    if name == "trainids":
        return LabelMap("trainids", tuple((v, v) for v in sorted(TRAIN_IDS)))
    if name == "cityscapes":
        train_of = {label_id: train_id for _, label_id, train_id, _ in CITYSCAPES_TABLE}
        return LabelMap("cityscapes", tuple((v, train_of.get(v, IGNORE_LABEL)) for v in range(256)))
    raise ValueError(f"no built-in label map {name!r} (known: {', '.join(BUILTIN_LABEL_MAPS)})")


def _train_id(path: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in TRAIN_IDS:
        raise LabelMapError(
            f"{path}: {key!r} maps to {value!r}; a label map's values are trainIds 0..18 or 255",
            "label_map",
        )
    return value


def read_label_map_file(path: str | os.PathLike[str]) -> LabelMap:
    """Read a JSON label map ``{"<source value>": <trainId>, ..., "default": <trainId>}``.

    Keys are decimal source values 0 .. 65535 (a 16-bit PNG's range) and the optional
    ``"default"``; values are trainIds 0 .. 18 or 255.

    Raises:
        LabelMapError: (key ``"label_map"``) naming the file: unreadable, not JSON, not an
            object, or a bad key or value.
    """
    where = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"), object_pairs_hook=_Pairs)
    except FileNotFoundError:
        raise LabelMapError(
            f"{where}: no such label map file (built-in maps: {', '.join(BUILTIN_LABEL_MAPS)})",
            "label_map",
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise LabelMapError(f"{where}: unreadable label map ({error})", "label_map") from None
    except json.JSONDecodeError as error:
        raise LabelMapError(
            f"{where}: not JSON ({error.msg} at line {error.lineno})", "label_map"
        ) from None
    if not isinstance(data, _Pairs) or not data:
        raise LabelMapError(
            f'{where}: a label map is a JSON object such as {{"7": 0, "8": 1, "default": 255}}',
            "label_map",
        )
    default: int | None = None
    mapped: dict[int, int] = {}
    for key, value in data:
        if key == "default" and default is None:
            default = _train_id(where, key, value)
            continue
        if not re.fullmatch(r"\d{1,5}", key) or int(key) > MAX_LABEL_VALUE:
            raise LabelMapError(
                f"{where}: key {key!r} is not a label value 0..{MAX_LABEL_VALUE} (or 'default')",
                "label_map",
            )
        if int(key) in mapped:
            raise LabelMapError(f"{where}: label value {int(key)} is listed twice", "label_map")
        mapped[int(key)] = _train_id(where, key, value)
    return LabelMap("file", tuple(sorted(mapped.items())), default, where)


class _Pairs(list):
    """A JSON object read as its (key, value) pairs, in order (duplicates kept, to refuse)."""


def resolve_label_map(spec: str | os.PathLike[str] | LabelMap | None) -> LabelMap:
    """A built-in name, a JSON file's path, or a LabelMap; None: :data:`DEFAULT_LABEL_MAP`."""
    if isinstance(spec, LabelMap):
        return spec
    if spec is None:
        return builtin_label_map(DEFAULT_LABEL_MAP)
    if str(spec) in BUILTIN_LABEL_MAPS:
        return builtin_label_map(str(spec))
    return read_label_map_file(spec)
