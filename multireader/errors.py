"""The one error family of the multireader package.

Every specific error the package raises derives from :class:`MultireaderError`, itself
a ``ValueError``: callers that already catch ``ValueError`` keep working, and panels and
operators catch ``MultireaderError`` to tell a user's bad input from a bug. Pure module:
importable from every layer, including ``io`` and ``stats``.
"""


class MultireaderError(ValueError):
    """Base class of every error this package raises on bad input or state."""
