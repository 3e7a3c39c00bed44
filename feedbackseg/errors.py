"""fbseg's user-facing errors: the base :class:`FbsegError` and the errors of training,
evaluation, checkpoints, plots and devices (standard library only, no torch).

Every error feedbackseg raises for a user's input or a run that cannot go on derives from
:class:`FbsegError`: its message is one line naming the file, the folder or the value, and
``key`` names the option at fault when one is, so a command line can name its flag. The errors
of a module whose name says what they concern stay there (:class:`feedbackseg.config.ConfigError`,
:class:`feedbackseg.data.dataset.DataError`, :class:`feedbackseg.study.study_file.StudyError`); the
others are here. The subclasses keep their standard bases (``ValueError``, ``RuntimeError``).
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "DeviceError",
    "EvalError",
    "FbsegError",
    "MetricsError",
    "PlotError",
    "TrainError",
]


class FbsegError(Exception):
    """A problem with the user's input or run; one line naming it.

    Attributes:
        key: the option at fault in config-key words (``"height"``, ``"split"``, ``"device"``
            ...), or None when no single option is.
    """

    key: str | None = None


class TrainError(FbsegError, RuntimeError):
    """Training cannot start or had to stop; one-line message for the user."""


class MetricsError(FbsegError, ValueError):
    """A metrics log that cannot be read; one-line message naming the file and line."""


class EvalError(FbsegError, ValueError):
    """Evaluation or prediction cannot run as asked; one-line message naming the file or flag.

    Attributes:
        key: the argument at fault (e.g. ``"height"``) when one is, else None; a command line
            maps it to its flag (``turbsim_cli.options.bad_parameter``).
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class CheckpointError(FbsegError, ValueError):
    """A checkpoint file cannot be read or does not fit the network; one-line message."""


class PlotError(FbsegError, ValueError):
    """Nothing to draw from the given files; one-line message naming the file."""


class DeviceError(FbsegError, ValueError):
    """The asked device does not exist on this machine; one-line message.

    Attributes:
        key: always ``"device"`` (a command line maps it to its flag).
    """

    key = "device"
