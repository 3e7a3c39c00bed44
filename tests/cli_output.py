"""Running commands and reading their output in tests: :func:`run`, and the field-scale warning
apart from the lines a test checks.

The tiny frames of the test trees (48 x 96 px and the like) under the default camera make
``turbsim generate`` warn that the tilt field is large against the frame (turbsim.pipeline.plan
.warn_if_field_large); tests of other messages read the output without that line.
"""

from __future__ import annotations

from click.testing import CliRunner, Result

#: How the field-scale warning starts on the command line.
FIELD_WARNING = "warning: the tilt field is large against the"


def output_lines(text: str) -> list[str]:
    """The non-empty lines of ``text`` but the field-scale warnings."""
    return [
        line
        for line in text.strip().splitlines()
        if line.strip() and not line.startswith(FIELD_WARNING)
    ]


def run(command, *args: str) -> Result:
    return CliRunner().invoke(command, [str(a) for a in args])


def error_lines(result: Result) -> list[str]:
    return output_lines(result.output)
