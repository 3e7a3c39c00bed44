"""The shard contract's names and choices, and the Cityscapes class table (numpy only).

The one light module that every reader may import: feedbackseg takes the ignore label, the class
names and the palette from here, turbsim's recipe and CLI take the storage choice lists from
here (the physics choices are turbsim.physics.choices'). No h5py, numba, scipy or torch.
"""

from __future__ import annotations

import re

import numpy as np

# The physics choices a dataset records (recipe.json, the params of each sample) are the
# physics model's: defined in turbsim.physics.choices, named here for readers of the contract.
from turbsim.physics.choices import BLUR_MODES, BORDERS, NORMALIZE_CHOICES, WAVES  # noqa: F401

#: Version of the shard file layout (the ``schema_version`` attribute of every shard).
SCHEMA_VERSION = 1
#: Name of the manifest in an output folder.
MANIFEST_NAME = "manifest.json"
#: Version of the manifest layout (its ``schema_version`` key).
MANIFEST_SCHEMA_VERSION = 1
#: Published shard file names: ``shard-00042.h5``.
SHARD_RE = re.compile(r"^shard-(\d{5,})\.h5$")
#: Compression codecs a shard can use. gzip is readable by every HDF5 tool; lzf is about twice
#: as fast to write but only h5py reads it.
COMPRESSIONS: tuple[str, ...] = ("gzip", "lzf", "none")
#: Level of the gzip filter. Measured on a noisy, textured 1024x2048 RGB scene that gzip-1
#: packs to 77 % (Cityscapes frames: ~79 %): level 4 took 1.3x the time and was 6 % *larger*
#: (zlib's lazy matching loses on sensor noise). lzf: ~2x faster, ~24 % larger images.
GZIP_LEVEL = 1
#: How the optional displacement field is stored.
FLOW_STORAGES: tuple[str, ...] = ("int16", "float16")
#: The recipe's ``store_flow`` choices (``none``: no flow dataset).
FLOW_CHOICES: tuple[str, ...] = ("none", *FLOW_STORAGES)
#: How a stored flow is brought from the native to the stored size (recipe ``flow_resample``):
#: ``nearest`` (the first datasets: the nearest native vector, scaled; it keeps the native
#: roughness) or ``area`` (the area average, scaled: the displacement the area-resized image
#: shows). Written as the flow dataset's ``resample`` attribute when not ``nearest``.
FLOW_RESAMPLES: tuple[str, ...] = ("nearest", "area")
#: Default fixed-point step of int16 flow [px per unit]: +-512 px range, 1/128 px error.
DEFAULT_FLOW_SCALE = 1.0 / 64.0
#: Parameter keys stored as strings rather than float64.
STRING_PARAM_KEYS = frozenset({"wave"})
#: Keys of one manifest ``shards`` entry (:class:`turbsim.shards.ShardInfo`), in file order.
SHARD_INFO_KEYS: tuple[str, ...] = ("file", "split", "index", "samples", "bytes", "sha256")

#: Splits of the Cityscapes layout, in the order of their split codes (seeding).
SPLITS: tuple[str, ...] = ("train", "val", "test")

# ------------------------------------------------------------------------- Cityscapes classes
#: trainId of pixels that are not evaluated (void classes, unlabelled images).
IGNORE_LABEL = 255
#: Number of evaluated classes (trainIds 0 .. 18).
NUM_CLASSES = 19

#: (name, labelId, trainId, RGB colour) of the 19 evaluated classes, in trainId order.
#: Source: cityscapesScripts helpers/labels.py (MIT licence), copied so that the ~100 MB
#: ``cityscapesscripts`` package stays out of the runtime.
CITYSCAPES_TABLE: tuple[tuple[str, int, int, tuple[int, int, int]], ...] = (
    ("road", 7, 0, (128, 64, 128)),
    ("sidewalk", 8, 1, (244, 35, 232)),
    ("building", 11, 2, (70, 70, 70)),
    ("wall", 12, 3, (102, 102, 156)),
    ("fence", 13, 4, (190, 153, 153)),
    ("pole", 17, 5, (153, 153, 153)),
    ("traffic light", 19, 6, (250, 170, 30)),
    ("traffic sign", 20, 7, (220, 220, 0)),
    ("vegetation", 21, 8, (107, 142, 35)),
    ("terrain", 22, 9, (152, 251, 152)),
    ("sky", 23, 10, (70, 130, 180)),
    ("person", 24, 11, (220, 20, 60)),
    ("rider", 25, 12, (255, 0, 0)),
    ("car", 26, 13, (0, 0, 142)),
    ("truck", 27, 14, (0, 0, 70)),
    ("bus", 28, 15, (0, 60, 100)),
    ("train", 31, 16, (0, 80, 100)),
    ("motorcycle", 32, 17, (0, 0, 230)),
    ("bicycle", 33, 18, (119, 11, 32)),
)

#: Class name of each trainId 0 .. 18.
CITYSCAPES_CLASSES: tuple[str, ...] = tuple(name for name, _, _, _ in CITYSCAPES_TABLE)

#: uint8 (19, 3), read-only: RGB colour of each trainId, as in the official ``_color.png`` files.
CITYSCAPES_PALETTE: np.ndarray = np.array([c for _, _, _, c in CITYSCAPES_TABLE], np.uint8)
CITYSCAPES_PALETTE.flags.writeable = False
