"""Reading records from local files, and user prompt files with a `prompt` column.

Record files: JSON Lines (``.jsonl``, ``.jsonl.gz``), JSON (``.json``, ``.json.gz``: an array
of objects, an object holding one, or JSON Lines under a ``.json`` name as OpenAI's
summarize-from-feedback batches are), CSV (``.csv``) and Parquet (``.parquet``).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mavis.errors import MavisError
from mavis.prompts.base import RawPrompt

RECORD_SUFFIXES: tuple[str, ...] = (
    ".jsonl", ".jsonl.gz", ".json", ".json.gz", ".csv", ".parquet",
)
PROMPT_FILE_SUFFIXES: tuple[str, ...] = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".csv")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in sorted(RECORD_SUFFIXES, key=len, reverse=True) if name.endswith(s)),
                path.suffix.lower())


def looks_like_file(name: str) -> bool:
    """Whether a prompt-set name is meant as a file path (by its extension)."""
    return name.lower().endswith(PROMPT_FILE_SUFFIXES)


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8", newline="")  # noqa: SIM115 (returned to the caller)


def numbered_json_lines(lines: Iterator[str], path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON Lines text; MavisError names
    the file and line of anything that is not a JSON object."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MavisError(f"{path}: line {number} is not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise MavisError(f"{path}: line {number} is not a JSON object")
        yield number, record


def _json_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with _open_text(path) as handle:
        content = handle.read()
    if not content.strip():
        return
    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            raise MavisError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})") from exc
        for number, record in numbered_json_lines(iter(content.splitlines()), path):
            yield f"line {number}", record  # JSON Lines named .json
        return
    if isinstance(data, dict):
        lists = [value for value in data.values() if isinstance(value, list)]
        if len(lists) != 1:
            raise MavisError(f"{path}: expected a JSON array of objects (or one object holding "
                             "such an array)")
        data = lists[0]
    if not isinstance(data, list):
        raise MavisError(f"{path}: expected a JSON array of objects")
    for number, record in enumerate(data):
        if isinstance(record, str):
            record = {"prompt": record}
        if not isinstance(record, dict):
            raise MavisError(f"{path}: item {number} is neither an object nor a string")
        yield f"item {number}", record


def check_exists(path: Path) -> Path:
    """Raise a clear error unless `path` exists."""
    if not path.exists():
        raise MavisError(f"prompt file not found: {path}")
    return path


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the records (dicts) of one local data file; the format follows the extension.
    A file that cannot be read as what its name says is a MavisError naming it."""
    for _, record in numbered_records(path):
        yield record


def numbered_records(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, record) for each record of one local data file: where is "line N" (JSON Lines,
    CSV) or "item N" (a JSON array, a Parquet row), as an error names the record."""
    path = check_exists(Path(path).expanduser())
    if not path.is_file():
        raise MavisError(f"{path} is a folder, not a file; give the data file itself")
    try:
        yield from _records(path)
    except UnicodeDecodeError as exc:
        raise MavisError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it "
                         "as UTF-8") from None
    except (OSError, EOFError, csv.Error) as exc:
        raise MavisError(f"cannot read {path} ({type(exc).__name__}: {exc})") from None


def _records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    suffix = _suffix(path)
    if suffix in (".jsonl", ".jsonl.gz"):
        with _open_text(path) as handle:
            for number, record in numbered_json_lines(iter(handle), path):
                yield f"line {number}", record
    elif suffix in (".json", ".json.gz"):
        yield from _json_records(path)
    elif suffix == ".csv":
        with _open_text(path) as handle:
            reader = csv.DictReader(handle)
            for record in reader:
                yield f"line {reader.line_num}", record
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for number, record in enumerate(pq.read_table(path).to_pylist()):
            yield f"item {number}", record
    else:
        raise MavisError(
            f"cannot read {path}: unsupported file type {suffix or '(none)'}; use one of "
            + ", ".join(RECORD_SUFFIXES)
        )


def data_files(path: str | Path) -> list[Path]:
    """A file itself, or every supported data file under a folder (sorted, recursive)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MavisError(f"data file or folder not found: {path}")
    if path.is_file():
        return [path]
    found = sorted(p for p in path.rglob("*")
                   if p.is_file() and p.name.lower().endswith(RECORD_SUFFIXES))
    if not found:
        raise MavisError(f"no data files ({', '.join(RECORD_SUFFIXES)}) under {path}")
    return found


def _csv_header(path: Path) -> list[str]:
    try:
        with _open_text(path) as handle:
            return list(csv.DictReader(handle).fieldnames or [])
    except UnicodeDecodeError as exc:
        raise MavisError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it "
                         "as UTF-8") from None
    except csv.Error as exc:
        raise MavisError(f"cannot read {path} as CSV ({exc})") from None


def prompt_value(value: Any, path: Path, where: str) -> str:
    """The text of the prompt of the record at `where` ("line 3"), stripped. It must be a
    string: null and other JSON types are errors that name the record; a blank string is
    skipped later, like a blank line."""
    if value is None:
        raise MavisError(f"{path}: {where} has a null prompt; give every record a prompt "
                         "text, or remove the record")
    if not isinstance(value, str):
        raise MavisError(f"{path}: {where} has a prompt of type {type(value).__name__} "
                         f"({str(value)[:40]!r}); prompts must be text (quote it)")
    return value.strip()


# The keys a prompt file's records may use (others are ignored: a file may carry more columns).
PROMPT_KEYS = ("prompt", "category")


def load_prompt_file(path: str | Path) -> list[RawPrompt]:
    """Read a user prompt file: one prompt per record, in a column named ``prompt``.

    An optional ``category`` column is kept. The source (and id prefix) is the file's stem.
    Blank prompts are skipped; a null or non-text prompt is an error naming its record, and so
    is a record without a ``prompt`` (a misspelt key) in a file whose other records have one.
    """
    path = check_exists(Path(path).expanduser())
    if not path.is_file():
        raise MavisError(f"{path} is a folder, not a file; give the prompt file itself")
    if not path.name.lower().endswith(PROMPT_FILE_SUFFIXES):
        raise MavisError(f"cannot read prompts from {path}: use a "
                         + "/".join(PROMPT_FILE_SUFFIXES) + " file with a 'prompt' column")
    source = path.name.split(".")[0] or "file"
    if path.name.lower().endswith(".csv"):
        header = _csv_header(path)
        if header and "prompt" not in header:
            raise MavisError(f"{path} has no 'prompt' column (columns found: "
                             + ", ".join(header) + ")")
    prompts: list[RawPrompt] = []
    columns: list[str] = []
    without: tuple[str, list[str]] | None = None  # the first record lacking a prompt
    for where, record in numbered_records(path):
        keys = [str(key) for key in record if key is not None]
        if "prompt" not in record:
            columns += [key for key in keys if key not in columns]
            without = without or (where, keys)
            continue
        text = prompt_value(record["prompt"], path, where)
        prompts.append(RawPrompt(text, source, str(record.get("category") or "")))
    if not prompts and columns:
        raise MavisError(f"{path} has no 'prompt' column (columns found: "
                         + ", ".join(columns) + ")")
    if without is not None:
        where, keys = without
        raise MavisError(f"{path}: {where} has no 'prompt' key (its keys: "
                         f"{', '.join(keys) or 'none'}); every record needs 'prompt' (the keys "
                         f"read: {', '.join(PROMPT_KEYS)}); fix or remove it")
    if not any(p.text for p in prompts):
        raise MavisError(f"{path} contains no prompts")
    return prompts
