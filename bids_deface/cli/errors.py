"""Usage errors: a request that cannot be run as asked, shown as one line (exit status 2)."""

from __future__ import annotations

class UsageError(Exception):
    """A request that cannot be run as asked; shown as one line, exit status 2."""
