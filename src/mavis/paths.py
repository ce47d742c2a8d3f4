"""Where mavis keeps what it builds once and reuses (converted models, fitted reward heads).

`MAVIS_CACHE` moves the cache; otherwise it lives under the platform's user cache directory
(`$XDG_CACHE_HOME/mavis`, usually `~/.cache/mavis`).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from mavis.errors import MavisError


def cache_dir(*parts: str) -> Path:
    """Return (and create) a folder inside the mavis cache."""
    root = os.environ.get("MAVIS_CACHE")
    base = Path(root).expanduser() if root else Path(platformdirs.user_cache_dir("mavis"))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_writable(path: str | Path, *, folder: bool = False, what: str = "output") -> Path:
    """Check, without creating anything, that `path` can be written: it is not a folder (a
    file when `folder`), and its nearest existing ancestor is a folder this process may write
    in. Raises MavisError naming the path and what is wrong, before any work starts."""
    path = Path(path).expanduser()
    if path.exists():
        if folder and not path.is_dir():
            raise MavisError(f"{what} {str(path)!r} is a file; give a folder")
        if not folder and path.is_dir():
            raise MavisError(f"{what} {str(path)!r} is a folder; give a file name")
        if not os.access(path, os.W_OK):
            raise MavisError(f"no permission to write {what} {str(path)!r}")
        return path
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise MavisError(f"cannot write {what} {str(path)!r}: {str(ancestor)!r} is a file, "
                         "not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise MavisError(f"cannot write {what} {str(path)!r}: no permission to write in "
                         f"{str(ancestor)!r}")
    return path
