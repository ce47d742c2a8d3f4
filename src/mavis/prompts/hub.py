"""Loading a data set from the Hugging Face hub (for users who can reach it) or from local files
in the same format, with a clear error when neither works."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mavis.errors import MavisError
from mavis.prompts.files import data_files, read_records

PARQUET_REVISION = "refs/convert/parquet"


def hub_records(repo: str, columns: Sequence[str], *, config: str | None = None,
                data_dir: str | None = None, local_hint: str = "") -> Iterator[dict[str, Any]]:
    """Yield the records of every split of a hub data set, keeping only `columns`.

    `datasets` caches downloads, so only the first call needs the network. When the hub cannot
    provide the data set, raise a MavisError that says so and how to use local files instead.
    """
    import datasets

    try:
        try:
            loaded = datasets.load_dataset(repo, config, data_dir=data_dir)
        except RuntimeError as exc:
            if "scripts are no longer supported" not in str(exc):
                raise
            # a script-based repository: the hub's automatic Parquet conversion has the data
            loaded = datasets.load_dataset(repo, config, data_dir=data_dir,
                                           revision=PARQUET_REVISION)
    except Exception as exc:  # connection, offline mode, missing repository ...
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise MavisError(
            f"could not load {repo!r} from the Hugging Face hub ({type(exc).__name__}: "
            f"{detail}); without the hub, download its data files elsewhere and point at them"
            + (f": {local_hint}" if local_hint else "")
        ) from exc
    for split in loaded.values():
        kept = [c for c in columns if c in split.column_names]
        yield from split.select_columns(kept) if kept else split


def local_records(path: str | Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Yield (file, record) for one local data file or every data file under a folder."""
    for file in data_files(path):
        for record in read_records(file):
            yield file, record


def check_columns(found_any: bool, columns_seen: set[str], wanted: str, where: str) -> None:
    """Raise a clear error when no record had any of the wanted columns."""
    if not found_any:
        seen = ", ".join(sorted(columns_seen)) or "none"
        raise MavisError(f"{where} has no {wanted} (columns found: {seen})")
