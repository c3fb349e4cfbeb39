"""Reading a file the user named or the dataset holds, with a one-line error that names it."""

from __future__ import annotations

from pathlib import Path


def read_bytes(path: str | Path, where: str, error: type[Exception], what: str = "") -> bytes:
    """The bytes of ``path``; on failure ``error("<where>: [what ]cannot be read (<reason>)")``."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise error(f"{where}: {what + ' ' if what else ''}cannot be read ({exc.strerror})") from None
