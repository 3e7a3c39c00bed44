"""The one exception of the shard package that users see (numpy-free, h5py-free)."""

from __future__ import annotations

from turbsim.errors import TurbsimError


class ShardError(TurbsimError, RuntimeError):
    """A user-facing problem with a shard folder or file; the message is one line naming it.

    Attributes:
        key: the option at fault when one is (e.g. ``"split"`` for a split the folder does not
            hold), so a command can name its flag; None otherwise.
    """

    def __init__(self, message: str = "", key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
