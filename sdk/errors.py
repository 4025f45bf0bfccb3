"""The one exception type users see: a one-line message that names the problem and what to do."""


class SadhError(ValueError):
    """Bad input or state, reported in one line (the CLI prints it and exits with code 2)."""


class ModelError(SadhError):
    """The model itself is at fault (wrong code width, NaN outputs): no input could be encoded, so none is skipped."""
