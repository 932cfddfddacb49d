"""The one error type for bad input: a message the user can act on."""


class CubecoreError(Exception):
    """A problem the user can fix: bad params, a missing file, malformed data."""
