"""The registry of named prompt sets and the resolution of a name (or path) to a set."""

from __future__ import annotations

from pathlib import Path

from mavis.errors import MavisError
from mavis.prompts import chitchat, harmful, hh_rlhf, summarize
from mavis.prompts.base import PromptSet
from mavis.prompts.files import PROMPT_FILE_SUFFIXES, load_prompt_file, looks_like_file
from mavis.registry import Registry

PROMPT_SETS: Registry[PromptSet] = Registry("prompt set")

FILE_SET = PromptSet(
    name="file",
    description="a local .jsonl/.json/.csv file with a 'prompt' column",
    load=lambda path: load_prompt_file(path or ""),
    takes_argument=True,
)


def register_prompt_set(prompt_set: PromptSet) -> PromptSet:
    """Add a prompt set under its name (replacing one of the same name)."""
    return PROMPT_SETS.register(prompt_set.name, prompt_set.description)(prompt_set)


for _set in (
    chitchat.CHITCHAT,
    chitchat.CHITCHAT_STARTERS,
    harmful.HARMFUL,
    harmful.DONOTANSWER,
    harmful.HARMBENCH,
    harmful.RTP,
    hh_rlhf.HH_RLHF,
    hh_rlhf.HH_RLHF_HARMLESS,
    hh_rlhf.HH_RLHF_HELPFUL,
    summarize.SUMMARIZE,
):
    register_prompt_set(_set)


def resolve(name_or_path: str) -> tuple[PromptSet, str | None]:
    """Find the prompt set for a name, ``name:argument`` or file path; return it and its
    argument (None for plain names)."""
    if name_or_path in PROMPT_SETS:
        return PROMPT_SETS.get(name_or_path), None
    prefix, colon, argument = name_or_path.partition(":")
    if colon and argument and prefix in PROMPT_SETS:
        prompt_set = PROMPT_SETS.get(prefix)
        if prompt_set.takes_argument:
            return prompt_set, argument
    if looks_like_file(name_or_path) or Path(name_or_path).expanduser().is_file():
        return FILE_SET, name_or_path
    if Path(name_or_path).expanduser().is_dir():
        raise MavisError(f"{name_or_path!r} is a folder; give a prompt file ("
                         + "/".join(PROMPT_FILE_SUFFIXES) + ") or a prompt set's name "
                         "(`mavis prompts list`)")
    with_arguments = [n for n in PROMPT_SETS.names() if PROMPT_SETS.get(n).takes_argument]
    raise MavisError(
        f"unknown prompt set {name_or_path!r}; known prompt sets: "
        + ", ".join(PROMPT_SETS.names())
        + "; or a " + "/".join(PROMPT_FILE_SUFFIXES) + " file with a 'prompt' column"
        + "".join(f", or {n}:PATH" for n in with_arguments)
    )
