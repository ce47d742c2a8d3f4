"""The parts folder of a collection in progress: one small tree file per finished group.

`out.h5` is collected as `out.h5.parts/group-000000.h5`, `group-000001.h5`, ... plus a
`manifest.json` naming the settings. Each part is written under a temporary name and moved
into place, so a part that exists is complete, even after `kill -9`; a restart with the same
settings skips the groups already there, and a restart with other settings is refused (it
would mix two collections). When every group is there, the parts are merged into `out.h5` in
group order and the folder is removed.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mavis.errors import MavisError
from mavis.paths import write_text_atomic
from mavis.trees.store import merge_parts, write_trees
from mavis.trees.table import TreeTable

MANIFEST = "manifest.json"
_PART = re.compile(r"^group-(\d{6,})\.h5$")
_TEMP = re.compile(r"^\..*\.tmp-\d+$")


def parts_folder_for(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".parts")


def describe_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """`key: old -> new` for the keys whose values differ (at most five)."""
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    shown = [f"{k}: {_short(old.get(k))} -> {_short(new.get(k))}" for k in keys[:5]]
    if len(keys) > 5:
        shown.append(f"and {len(keys) - 5} more")
    return "; ".join(shown)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


class PartsFolder:
    """Finished groups of one collection, keyed by group index."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.root = parts_folder_for(self.out)
        self.manifest: dict[str, Any] | None = None

    def open(self, manifest: Mapping[str, Any]) -> set[int]:
        """Check the folder, when there is one, against `manifest` (the settings of this
        collection); return the indices of the groups already collected. Nothing is created
        here: the folder and its manifest appear with the first part (`ensure`), so a run
        that fails before its first group is done leaves nothing behind, and a folder that
        holds no group yet (such a run's, from before) is taken over by a run with other
        settings. Leftover temporary files are removed."""
        self.manifest = json.loads(json.dumps(dict(manifest), sort_keys=True))
        if not self.root.exists():
            return set()
        done = self.done()
        path = self.root / MANIFEST
        if path.exists() and done:
            try:
                existing = json.loads(path.read_text())
            except json.JSONDecodeError:
                existing = None
            if existing != self.manifest:
                why = (describe_differences(existing, self.manifest)
                       if isinstance(existing, dict) else "its manifest is unreadable")
                raise MavisError(
                    f"{self.root} holds an unfinished collection with other settings ({why}); "
                    f"to resume it, run with its settings again; otherwise choose a new --out "
                    f"or delete {self.root}")
        for entry in self.root.iterdir():
            if _TEMP.match(entry.name) and entry.is_file():
                entry.unlink(missing_ok=True)
        return done

    def ensure(self) -> None:
        """Create the folder with this collection's manifest (before the first part)."""
        if self.manifest is None:
            raise MavisError("open the parts folder with the collection's settings first")
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / MANIFEST
        text = json.dumps(self.manifest, indent=2, sort_keys=True)
        if not path.exists() or (not self.done() and path.read_text() != text):
            write_text_atomic(path, text)

    def done(self) -> set[int]:
        if not self.root.exists():
            return set()
        return {int(m.group(1)) for e in self.root.iterdir() if (m := _PART.match(e.name))}

    def part_path(self, group: int) -> Path:
        return self.root / f"group-{group:06d}.h5"

    def write(self, group: int, trees: TreeTable) -> Path:
        self.ensure()
        return write_trees(self.part_path(group), trees, attrs={"group": group})

    def merge(self, groups: int, meta: Mapping[str, Any]) -> Path:
        """Merge parts 0..groups-1 into the output file (all must be there)."""
        missing = sorted(set(range(groups)) - self.done())
        if missing:
            raise MavisError(f"cannot merge {self.root}: group(s) {missing[:10]} are missing")
        return merge_parts([self.part_path(g) for g in range(groups)], self.out, meta=meta)

    def remove(self) -> None:
        """Delete the parts and the manifest (after a successful merge)."""
        if not self.root.exists():
            return
        for entry in self.root.iterdir():
            if _PART.match(entry.name) or entry.name == MANIFEST or _TEMP.match(entry.name):
                entry.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # something else lives there: leave it
            self.root.rmdir()
