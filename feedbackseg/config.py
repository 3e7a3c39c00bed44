"""The training configuration: a frozen dataclass, named recipes, TOML files and overrides.

Resolution order (each later source overrides the earlier ones, key by key)::

    TrainConfig defaults  <-  named recipe (--recipe)  <-  TOML file (--config)  <-  flags

The resolved config is validated here and saved as ``RUN/config.json`` by the trainer; a resumed
run must resolve to the same config except for the keys in :data:`RESUMABLE_KEYS`.

Recipes:

- ``bmvc2020``, the :class:`TrainConfig` defaults: the optimisation of Rai et al., BMVC 2020
  (SPEC-feedbackseg sections 1 and 4): S Adam(lr 5e-4, betas (0.9, 0.999), eps 1e-8, weight
  decay 2e-4), lr x 0.99 every epoch;
  R Adam(lr 2e-4, betas (0.9, 0.999)), lr x 0.5 every 30 epochs; 150 epochs, batch 8, height
  224, T = 3, gammas 0 / 0.1 / 0.2, CB-iFL with alpha 1, no augmentation. Label layout: the
  clean 19 classes with 255 ignored, class weights from the training shards' pixel counts
  (SPEC 3's default).
- ``bmvc2020-original``: ``bmvc2020`` in the original release's label layout: 20 classes (255
  becomes the void class 19, weight 0) and the fixed ``bmvc2020`` class weights (n_c = 100 /
  e_c from ERFNet's weights); its checkpoints have the original's 20-class heads.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from feedbackseg.errors import FbsegError
from feedbackseg.label_layout import LAYOUTS
from feedbackseg.modes import MODE_TABLE, MODES
from feedbackseg.paths import absolute_path, not_found

__all__ = [
    "CLASS_WEIGHTS",
    "DEVICES",
    "INPUTS",
    "LOSSES",
    "MAX_LEARNING_RATE",
    "MODES",
    "RECIPES",
    "RESUMABLE_KEYS",
    "TURBULENCE",
    "ConfigError",
    "TrainConfig",
    "config_diff",
    "resolve_config",
]

#: Modes with a restorer R / with a segmenter S (feedbackseg.modes, the table of the modes).
RESTORER_MODES = tuple(name for name, mode in MODE_TABLE.items() if mode.restorer)
SEGMENTER_MODES = tuple(name for name, mode in MODE_TABLE.items() if mode.segmenter)
#: ``flow_init``: R's last convolution as PyTorch initialises it (the paper) or zero weight and
#: bias (the identity warp at step 0).
FLOW_INITS = ("paper", "zero")
#: ``restorer_bn``: R's BatchNorm at inference uses the running statistics (PyTorch's eval
#: mode; our default) or the batch statistics (the original, which never calls rmodel.eval()).
RESTORER_BN = ("running", "batch")
#: ``flow_loss``: R learns from L1 alone (the paper) or also from the EPE of its flow against
#: the smoothed inverse of the true displacement (feedbackseg.evaluation.restoration).
FLOW_LOSSES = ("none", "epe")
#: ``turbulence_render``: online fields drawn at the native size and area-averaged, or drawn
#: directly at the training size with the area-averaged covariance (turbsim.augment).
TURBULENCE_RENDERS = ("native", "stored")
#: Segmentation losses (SPEC 3): CB-iFL, iFL (unit weights), cross-entropy (gamma 0, unit).
LOSSES = ("cb-ifl", "ifl", "ce")
#: Sources of the CB-iFL class weights.
CLASS_WEIGHTS = ("shards", "bmvc2020", "none")
#: Network inputs: the distorted images (the paper's setting) or the clean ones (the upper
#: reference of ``fbseg study``: how much turbulence costs); the restoration target stays clean.
INPUTS = ("distorted", "clean")
#: Where the training images' turbulence comes from: the shards' stored distorted images (the
#: paper's setting), or a fresh distortion of their clean images at every draw
#: (:mod:`feedbackseg.data.turbulence`); validation always uses the stored distorted images.
TURBULENCE = ("stored", "online")
#: ``--device`` values; ``auto`` is CUDA when available.
DEVICES = ("auto", "cpu", "cuda")
#: Largest accepted ``lr_s`` / ``lr_r``. Adam's step is about the learning rate times the sign of
#: the gradient, so a rate above 1 moves every weight by more than its usual size in one step:
#: the next forward pass overflows (the rates of SPEC 4 are 5e-4 and 2e-4).
MAX_LEARNING_RATE = 1.0
#: Keys a resumed run may change: they move the step target, only affect logging/speed, or are
#: where the run lives (``out``: a copied or moved run folder resumes).
RESUMABLE_KEYS = frozenset(
    {
        "out",
        "epochs",
        "max_steps",
        "workers",
        "log_every",
        "checkpoint_every",
        "val_every",
        "locking",
        "resume",
        "overwrite",
    }
)
#: Keys holding paths (made absolute when resolved, so a resumed run compares them exactly).
_PATH_KEYS = ("shards", "out", "pretrained_encoder", "pretrained_restorer")


class ConfigError(FbsegError, ValueError):
    """A bad configuration value or file; one-line message in config-key words.

    ``str(error)`` reads ``"height: 36 is not a multiple of 16 ..."`` (one key),
    ``"resume and overwrite exclude each other"`` (several) or names the file. A command line
    maps the keys to its flags (:meth:`describe`).

    Attributes:
        reason: the message without the key(s).
        keys: the config keys at fault (empty: a file or the config as a whole).
        key: the one key at fault, or None (several or none).
    """

    def __init__(self, reason: str, key: str | None = None, *, keys: tuple[str, ...] = ()):
        self.reason = reason
        self.keys: tuple[str, ...] = tuple(keys) or ((key,) if key is not None else ())
        self.key = self.keys[0] if len(self.keys) == 1 else None
        super().__init__(self.describe())

    def describe(self, name: Callable[[str], str] = str) -> str:
        """The message with each key written as ``name(key)`` (e.g. its command-line flag)."""
        names = [name(k) for k in self.keys]
        if not names:
            return self.reason
        if len(names) == 1:
            return f"{names[0]}: {self.reason}"
        return f"{' and '.join(names)} {self.reason}"


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on (saved as ``RUN/config.json``).

    Attributes:
        shards: turbsim shard folder (``manifest.json`` + split folders).
        out: run folder RUN (config.json, metrics.jsonl, last.pt, best.pt).
        mode: "feedback", "restore-seg" or "erfnet" (SPEC 2.4).
        loss: "cb-ifl", "ifl" or "ce" (SPEC 3).
        input: the training images fed to the network: "distorted" (default) or "clean"
            (:data:`INPUTS`); validation always runs on the distorted ``val_split``. Left out
            of :meth:`to_dict` (config.json, checkpoints) when "distorted", so runs written
            before the key existed resume and their files stay byte-identical.
        turbulence: "stored" (default: the shards' distorted images) or "online" (the clean
            training images distorted afresh at every draw, :mod:`feedbackseg.data.turbulence`).
            Left out of :meth:`to_dict` when "stored", as ``input``.
        turbulence_recipe: with "online": the turbsim recipe of the fresh distortion (a shipped
            name or a TOML file); None: the one recorded in the shards' manifest. Left out of
            :meth:`to_dict` when None.
        turbulence_render: with "online": :data:`TURBULENCE_RENDERS` ("stored": the fields at
            the training size directly, much cheaper when the native frames are large).
        flow_init: R's flow head, :data:`FLOW_INITS`.
        restorer_bn: R's BatchNorm at inference, :data:`RESTORER_BN`.
        flow_loss: :data:`FLOW_LOSSES` ("epe" needs the true flow: shards with a stored flow,
            or online turbulence); flow_weight: the EPE term's weight [1 / px].
        pretrained_restorer: R's weights to start from: a checkpoint of a run with a restorer
            (a ``restore`` run's best.pt, say) or an original ``rmodel_best.pth``.
        The restorer options are left out of :meth:`to_dict` at their defaults (the paper's).
        recipe: name of the recipe the defaults came from (informational once resolved).
        epochs: training length in epochs (unless ``max_steps`` is set).
        max_steps: training length in optimiser steps; overrides ``epochs`` when set.
        batch_size: samples per step and process.
        height: training/validation image height [px] (width keeps the aspect, multiple of 16);
            None keeps the stored size.
        iterations: feedback iterations T (feedback mode).
        gamma_step: iFL gamma increment per iteration (gammas 0, 0.1, 0.2 for T = 3).
        alpha: overall scale of the segmentation loss.
        beta: effective-number hyper-parameter of the class-balanced weights.
        class_weights: "shards" (pixel counts of the training split), "bmvc2020" (fixed
            constants) or "none" (unit weights); used by the cb-ifl loss only.
        num_classes: 19 (255 ignored) or 20 (the original layout with the void class 19).
        train_split: split trained on.
        val_split: split validated on (skipped when the shards have no such split); None: never.
        val_every: validate every this many steps; None: at the end of every epoch. Always
            once at the end of training.
        log_every: write a metrics.jsonl line every this many steps.
        checkpoint_every: write last.pt every this many steps (and at every validation and at
            the end).
        workers: DataLoader worker processes (0: load in the main process).
        device: "auto", "cpu" or "cuda".
        amp: mixed precision (bf16 autocast where supported, else fp16 with a GradScaler;
            bf16 on the CPU). None = off, as in the original: the feedback signal is the
            difference of two logit maps, and in bf16 the rounding noise of S's train-mode
            logits is of the size of that signal (``benchmarks/bench_feedback_step.py``).
        tf32: let CUDA run float32 convolutions and matmuls in TF32 (10-bit mantissa: S's
            logits then carry 0.16 rms of rounding noise at initialisation, see
            :mod:`feedbackseg.devices.precision`); off by default. No effect on the CPU.
        channels_last: channels-last (NHWC) memory format; None = on for CUDA. Off by default
            on the CPU: there it is 1.0-1.3x faster, but PyTorch's NHWC train-mode BatchNorm
            kernel rounds ~30x worse than the NCHW one (``benchmarks/bench_feedback_step.py``).
        seed: root seed (weights, dropout, shuffling, augmentation).
        small: narrow restorer (base width 8) for CPU work.
        pretrained_encoder: ERFNet encoder weights of an original release to start S from.
        augment: random crop (``crop``) and horizontal flip of the training samples.
        crop: (h, w) [px] of the random crop, with ``augment``.
        locking: h5py file locking (False on network filesystems); None = h5py's default.
        lr_s, betas_s, eps_s, weight_decay_s: S's Adam (learning rates: finite, in
            (0, :data:`MAX_LEARNING_RATE`]).
        lr_s_decay, lr_s_decay_epochs: S's StepLR (x decay every decay_epochs epochs).
        lr_r, betas_r, eps_r, weight_decay_r: R's Adam.
        lr_r_decay, lr_r_decay_epochs: R's StepLR.
        resume: continue from ``out/last.pt``.
        overwrite: replace the files of an existing run in ``out``.
    """

    shards: str
    out: str
    mode: str = "feedback"
    loss: str = "cb-ifl"
    input: str = "distorted"
    turbulence: str = "stored"
    turbulence_recipe: str | None = None
    turbulence_render: str = "native"
    flow_init: str = "paper"
    restorer_bn: str = "running"
    flow_loss: str = "none"
    flow_weight: float = 1.0
    pretrained_restorer: str | None = None
    recipe: str | None = None
    epochs: int = 150
    max_steps: int | None = None
    batch_size: int = 8
    height: int | None = 224
    iterations: int = 3
    gamma_step: float = 0.1
    alpha: float = 1.0
    beta: float = 0.9999
    class_weights: str = "shards"
    num_classes: int = 19
    train_split: str = "train"
    val_split: str | None = "val"
    val_every: int | None = None
    log_every: int = 10
    checkpoint_every: int = 500
    workers: int = 2
    device: str = "auto"
    amp: bool | None = None
    tf32: bool = False
    channels_last: bool | None = None
    seed: int = 0
    small: bool = False
    pretrained_encoder: str | None = None
    augment: bool = False
    crop: tuple[int, int] | None = None
    locking: bool | None = None
    lr_s: float = 5e-4
    betas_s: tuple[float, float] = (0.9, 0.999)
    eps_s: float = 1e-8
    weight_decay_s: float = 2e-4
    lr_s_decay: float = 0.99
    lr_s_decay_epochs: int = 1
    lr_r: float = 2e-4
    betas_r: tuple[float, float] = (0.9, 0.999)
    eps_r: float = 1e-8
    weight_decay_r: float = 0.0
    lr_r_decay: float = 0.5
    lr_r_decay_epochs: int = 30
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists); ``input``, ``turbulence`` and
        ``turbulence_recipe`` only when they are not at their defaults (so that the files of
        runs without them stay byte-identical)."""
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        for key, default in _OPTIONAL_DEFAULTS.items():
            if data[key] == default:
                del data[key]
        return data

    def to_json(self) -> str:
        """Indented JSON of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a dict (e.g. a saved config.json); unknown keys are an error."""
        return cls(**_coerce(dict(data), source))


#: Keys left out of :meth:`TrainConfig.to_dict` at these values (added after runs existed).
_OPTIONAL_DEFAULTS: dict[str, Any] = {
    "input": INPUTS[0],
    "turbulence": TURBULENCE[0],
    "turbulence_recipe": None,
    "turbulence_render": TURBULENCE_RENDERS[0],
    "flow_init": FLOW_INITS[0],
    "restorer_bn": RESTORER_BN[0],
    "flow_loss": FLOW_LOSSES[0],
    "flow_weight": 1.0,
    "pretrained_restorer": None,
}


def _positive(config: TrainConfig, key: str, allow_none: bool = False, minimum: int = 1) -> None:
    value = getattr(config, key)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"must be an integer >= {minimum}, got {value!r}", key)


def _is_finite(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (not a bool, NaN or infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validate(c: TrainConfig) -> None:
    if c.mode not in MODES:
        raise ConfigError(f"unknown mode {c.mode!r} (expected one of {', '.join(MODES)})", "mode")
    if c.loss not in LOSSES:
        raise ConfigError(f"unknown loss {c.loss!r} (expected one of {', '.join(LOSSES)})", "loss")
    if c.input not in INPUTS:
        raise ConfigError(
            f"unknown input {c.input!r} (expected one of {', '.join(INPUTS)})", "input"
        )
    _validate_turbulence(c)
    _validate_restorer(c)
    if c.class_weights not in CLASS_WEIGHTS:
        raise ConfigError(
            f"unknown source {c.class_weights!r} (expected one of {', '.join(CLASS_WEIGHTS)})",
            "class_weights",
        )
    if c.device not in DEVICES:
        raise ConfigError(f"{c.device!r} is not one of {', '.join(DEVICES)}", "device")
    if c.num_classes not in LAYOUTS:
        known = " or ".join(str(n) for n in LAYOUTS)
        raise ConfigError(f"must be {known}, got {c.num_classes!r}", "num_classes")
    for key in ("epochs", "batch_size", "iterations", "log_every", "checkpoint_every"):
        _positive(c, key)
    for key in ("lr_s_decay_epochs", "lr_r_decay_epochs"):
        _positive(c, key)
    _positive(c, "max_steps", allow_none=True)
    _positive(c, "val_every", allow_none=True)
    _positive(c, "workers", minimum=0)
    _positive(c, "seed", minimum=0)
    multiple = MODE_TABLE[c.mode].size_multiple
    if c.height is not None:
        _positive(c, "height")
        if c.height % multiple:
            raise ConfigError(
                f"{c.height} is not a multiple of {multiple} (the {c.mode} networks "
                f"downsample by {multiple})",
                "height",
            )
    if c.crop is not None:
        if not c.augment:
            raise ConfigError("needs augment = true", "crop")
        if len(c.crop) != 2 or any(int(v) % multiple or int(v) < multiple for v in c.crop):
            raise ConfigError(f"must be (h, w), multiples of {multiple}, got {c.crop!r}", "crop")
    for key in ("amp", "channels_last", "tf32", "augment", "small", "locking"):
        value = getattr(c, key)
        nullable = key in ("amp", "channels_last", "locking")
        if not (isinstance(value, bool) or (value is None and nullable)):
            raise ConfigError(f"must be true or false, got {value!r}", key)
    for key in ("lr_s", "lr_r"):
        value = getattr(c, key)
        if not _is_finite(value) or not 0 < value <= MAX_LEARNING_RATE:
            raise ConfigError(
                f"must be a finite number in (0, {MAX_LEARNING_RATE:g}], got {value!r}", key
            )
    if not _is_finite(c.alpha) or not c.alpha > 0:
        raise ConfigError(f"must be a finite number > 0, got {c.alpha!r}", "alpha")
    for key in ("eps_s", "eps_r", "weight_decay_s", "weight_decay_r", "gamma_step"):
        value = getattr(c, key)
        if not _is_finite(value) or value < 0:
            raise ConfigError(f"must be a finite number >= 0, got {value!r}", key)
    for key in ("lr_s_decay", "lr_r_decay"):
        value = getattr(c, key)
        if not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise ConfigError(f"must be in (0, 1], got {value!r}", key)
    if not 0 <= c.beta < 1:
        raise ConfigError(f"must be in [0, 1), got {c.beta!r}", "beta")
    for key in ("betas_s", "betas_r"):
        betas = getattr(c, key)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ConfigError(f"must be two numbers in [0, 1), got {betas!r}", key)
    if c.resume and c.overwrite:
        raise ConfigError("exclude each other", keys=("resume", "overwrite"))
    if not c.shards or not c.out:
        raise ConfigError("must be given", keys=("shards", "out"))


def _validate_turbulence(c: TrainConfig) -> None:
    if c.turbulence not in TURBULENCE:
        raise ConfigError(
            f"unknown source {c.turbulence!r} (expected one of {', '.join(TURBULENCE)})",
            "turbulence",
        )
    if c.turbulence_recipe is not None:
        if not isinstance(c.turbulence_recipe, str) or not c.turbulence_recipe.strip():
            raise ConfigError(
                f"must be a recipe name or file, got {c.turbulence_recipe!r}", "turbulence_recipe"
            )
        if c.turbulence != "online":
            raise ConfigError("needs turbulence = online", "turbulence_recipe")
    if c.turbulence_render not in TURBULENCE_RENDERS:
        raise ConfigError(
            f"{c.turbulence_render!r} is not one of {', '.join(TURBULENCE_RENDERS)}",
            "turbulence_render",
        )
    if c.turbulence_render != TURBULENCE_RENDERS[0] and c.turbulence != "online":
        raise ConfigError("needs turbulence = online", "turbulence_render")
    if c.turbulence == "online" and c.input != INPUTS[0]:
        raise ConfigError(
            "exclude each other (online turbulence distorts the clean images)",
            keys=("turbulence", "input"),
        )


def _validate_restorer(c: TrainConfig) -> None:
    """The restorer options: known values, only where the mode has R (or S)."""
    for key, choices in (
        ("flow_init", FLOW_INITS),
        ("restorer_bn", RESTORER_BN),
        ("flow_loss", FLOW_LOSSES),
    ):
        value = getattr(c, key)
        if value not in choices:
            raise ConfigError(f"{value!r} is not one of {', '.join(choices)}", key)
        if value != choices[0] and c.mode not in RESTORER_MODES:
            raise ConfigError(f"needs a mode with a restorer, not {c.mode!r}", key)
    if c.pretrained_restorer is not None and c.mode not in RESTORER_MODES:
        raise ConfigError(f"needs a mode with a restorer, not {c.mode!r}", "pretrained_restorer")
    if c.pretrained_encoder is not None and c.mode not in SEGMENTER_MODES:
        raise ConfigError(f"needs a mode with a segmenter, not {c.mode!r}", "pretrained_encoder")
    if not _is_finite(c.flow_weight) or not c.flow_weight > 0:
        raise ConfigError(f"must be a finite number > 0, got {c.flow_weight!r}", "flow_weight")


#: Named recipes: key -> value over the dataclass defaults. ``bmvc2020`` is the defaults
#: themselves (SPEC section 4); ``bmvc2020-original`` changes the label layout only.
RECIPES: dict[str, dict[str, Any]] = {
    "bmvc2020": {},
    "bmvc2020-original": {"num_classes": 20, "class_weights": "bmvc2020"},
}

#: Recipe used when neither ``--recipe`` nor the TOML file names one.
DEFAULT_RECIPE = "bmvc2020"

_FIELDS = {f.name: f for f in fields(TrainConfig)}
_TUPLE_KEYS = ("betas_s", "betas_r", "crop")


def _coerce(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Normalise keys (hyphens -> underscores), check them, turn lists into tuples."""
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in _FIELDS:
            raise ConfigError(f"{source}: unknown key {key!r}")
        if name in _TUPLE_KEYS and value is not None:
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
            value = tuple(value)
        out[name] = value
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    """The keys of a training TOML file (flat, or under a ``[train]`` table).

    Raises:
        ConfigError: missing or unparsable file, unknown keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(not_found(path, "config file"))
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    if set(data) == {"train"} and isinstance(data["train"], dict):
        data = data["train"]
    return _coerce(data, str(path))


def resolve_config(
    shards: str | Path,
    out: str | Path,
    recipe: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """The training config: defaults <- recipe <- TOML file <- overrides (None values skipped).

    Args:
        shards: shard folder.
        out: run folder.
        recipe: a key of :data:`RECIPES`; None: the TOML file's ``recipe`` key if it has one,
            else ``bmvc2020``.
        config_file: TOML file of :class:`TrainConfig` keys.
        overrides: keys set on the command line; None values mean "not given".

    Raises:
        ConfigError: unknown recipe or key, invalid values.
    """
    file_values = read_toml(config_file) if config_file is not None else {}
    recipe = recipe or file_values.get("recipe") or DEFAULT_RECIPE
    if recipe not in RECIPES:
        raise ConfigError(
            f"unknown recipe {recipe!r} (expected one of {', '.join(RECIPES)})", "recipe"
        )
    values: dict[str, Any] = dict(RECIPES[recipe])
    values.update(file_values)
    values.update(_coerce({k: v for k, v in (overrides or {}).items() if v is not None}, "flags"))
    values["recipe"] = recipe
    if isinstance(values.get("val_split"), str) and values["val_split"].lower() in ("", "none"):
        values["val_split"] = None
    values["shards"], values["out"] = str(shards), str(out)
    for key in _PATH_KEYS:
        if values.get(key) is not None:
            values[key] = _absolute(values[key], key)
    turbulence_recipe = values.get("turbulence_recipe")
    if isinstance(turbulence_recipe, str) and _is_file_name(turbulence_recipe):
        values["turbulence_recipe"] = _absolute(turbulence_recipe, "turbulence_recipe")
    try:
        return TrainConfig(**values)
    except TypeError as error:  # wrong value types that the checks did not name
        raise ConfigError(f"config: {error}") from None


def _absolute(value: Any, key: str) -> str:
    """A path value made absolute (links resolved); a symlink loop is a ConfigError on ``key``."""
    try:
        return absolute_path(value)
    except ValueError as error:
        raise ConfigError(str(error), key) from None


def _is_file_name(value: str) -> bool:
    """Whether a recipe value names a file (a path or a .toml name) rather than a shipped name;
    files are made absolute, so a resumed run compares them exactly."""
    path = Path(value).expanduser()
    return path.suffix == ".toml" or len(path.parts) > 1 or path.is_file()


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"key: old -> new"`` for every key that differs, except :data:`RESUMABLE_KEYS`."""
    keys = sorted((old.keys() | new.keys()) - RESUMABLE_KEYS)
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
