"""The base of turbsim's user-facing errors (standard library only).

Every error turbsim raises for a user's input (a bad parameter, recipe, Cityscapes tree, image
folder, label map, plan, shard folder or export) derives from :class:`TurbsimError`: its message
is one line naming the file or the value, and ``key`` names the option at fault when one is, so
a command line can name its flag (``turbsim_cli.options.user_errors``). The subclasses keep
their standard bases (``ValueError``, ``RuntimeError``) for code that catches those.
"""

from __future__ import annotations

__all__ = ["TurbsimError"]


class TurbsimError(Exception):
    """A problem with the user's input; one line naming it.

    Attributes:
        key: the option at fault in the library's words (``"cn2"``, ``"size"``, ``"split"``,
            ``"label_map"`` ...), or None when no single option is (a bad file, say).
    """

    key: str | None = None
