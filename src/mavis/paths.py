"""Where mavis keeps what it builds once and reuses (converted models, fitted reward heads).

`MAVIS_CACHE` moves the cache; otherwise it lives under the platform's user cache directory
(`$XDG_CACHE_HOME/mavis`, usually `~/.cache/mavis`).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir(*parts: str) -> Path:
    """Return (and create) a folder inside the mavis cache."""
    root = os.environ.get("MAVIS_CACHE")
    base = Path(root).expanduser() if root else Path(platformdirs.user_cache_dir("mavis"))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
