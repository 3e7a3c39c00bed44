"""The one exception of the shard package that users see (numpy-free, h5py-free)."""

from __future__ import annotations


class ShardError(RuntimeError):
    """A user-facing problem with a shard folder or file; the message is one line naming it."""
