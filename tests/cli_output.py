"""Reading command output in tests: the field-scale warning apart from the lines a test checks.

The tiny frames of the test trees (48 x 96 px and the like) under the default camera make
``turbsim generate`` warn that the tilt field is large against the frame (turbsim.pipeline.plan
.warn_if_field_large); tests of other messages read the output without that line.
"""

from __future__ import annotations

#: How the field-scale warning starts on the command line.
FIELD_WARNING = "warning: the tilt field is large against the"


def output_lines(text: str) -> list[str]:
    """The non-empty lines of ``text`` but the field-scale warnings."""
    return [
        line
        for line in text.strip().splitlines()
        if line.strip() and not line.startswith(FIELD_WARNING)
    ]
