"""Finding data files shipped inside installed packages, without importing those packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mavis.errors import MavisError


def package_dir(package: str, install_hint: str, purpose: str) -> Path:
    """The folder of an installed top-level package, found without importing it.

    Raises a MavisError naming `install_hint` when the package is not installed.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise MavisError(f"{purpose} needs the package {package!r}, which is not installed: "
                         f"run `{install_hint}`")
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin:
        return Path(spec.origin).parent
    raise MavisError(f"cannot locate the files of the package {package!r}; reinstall it with "
                     f"`{install_hint}`")
