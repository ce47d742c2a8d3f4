"""Where mavis keeps what it builds once and reuses (converted models, fitted reward heads).

`MAVIS_CACHE` moves the cache; otherwise it lives under the platform's user cache directory
(`$XDG_CACHE_HOME/mavis`, usually `~/.cache/mavis`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
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


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (`.NAME.tmp-PID`); when the block succeeds, fsync
    it and move it onto `path` in one step, so a reader sees the old file or the new one,
    never half of one. On failure the temporary file is removed and `path` left untouched.
    The one way mavis writes a file others read (files: this; folders:
    `mavis.models.value_folder.replace_folder`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield temp
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` through `atomic_path`."""
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")
    return Path(path)


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
