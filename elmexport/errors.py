"""The one exception family users see: a one-line message that names the problem and the fix.

The CLI prints `error: <message>` and exits 2 for any ElmExportError; everything else is a bug.
"""


class ElmExportError(Exception):
    """Bad input or an unmet precondition (missing weights, wrong shapes, unknown option...)."""


class WeightsError(ElmExportError):
    """A checkpoint that cannot be found, read, or matched to the model config."""


class TokenizerError(ElmExportError):
    """A tokenizer that cannot be found or read."""
