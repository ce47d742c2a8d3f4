"""`python:<module>:<function>`: a reward function of your own, written in Python.

The function takes the whole batch and returns one number per pair:

    def my_reward(prompts: list[str], responses: list[str]) -> list[float]: ...

(batched on purpose: most reward code is faster on a batch; a per-pair function is one line
away: `return [score_one(p, r) for p, r in zip(prompts, responses)]`).

`<module>` is an importable module name (`mypkg.rewards`, found on `sys.path`; note that the
`mavis` console script does not put the current folder there) or the path of a `.py` file
(`./rewards.py`, `/abs/path/rewards.py`). Examples: `python:mypkg.rewards:brevity`,
`python:./rewards.py:brevity`.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from mavis.errors import MavisError
from mavis.objectives.base import Objective


class PythonFunction(Objective):
    """Scores with a user function `f(prompts, responses) -> list[float]`."""

    def __init__(self, target: str | Callable[[list[str], list[str]], Sequence[float]]) -> None:
        if callable(target):
            self.function = target
            where = f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', '?')}"
        else:
            self.function = load_function(target)
            where = target
        self.target = where
        doc = (getattr(self.function, "__doc__", None) or "").strip()
        self.description = doc.splitlines()[0] if doc else f"user function {where}"
        self.source = f"python:{where}"

    def _score(self, prompts: list[str], responses: list[str]) -> Sequence[float]:
        try:
            result = self.function(prompts, responses)
        except MavisError:
            raise
        except Exception as exc:  # the user's own code: its name and message, one line
            raise user_code_error(f"the objective python:{self.target}", exc) from exc
        if isinstance(result, (int, float, str, bytes)) or not hasattr(result, "__len__"):
            raise MavisError(
                f"python:{self.target} returned {type(result).__name__}, not a list; it is called "
                "once per batch as f(prompts, responses) and must return one number per pair"
            )
        if len(result) != len(prompts):
            raise MavisError(
                f"python:{self.target} returned {len(result)} scores for {len(prompts)} pairs; "
                "it must return one number per (prompt, response) pair"
            )
        scores = []
        for i, value in enumerate(result):
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise MavisError(
                    f"python:{self.target} returned {value!r} for pair {i}, which is not a number"
                ) from None
            if not math.isfinite(number):
                raise MavisError(f"python:{self.target} returned {number} for pair {i}")
            scores.append(number)
        return scores


def load_function(target: str) -> Callable:
    """Resolve "module:function" or "path/to/file.py:function" to the function."""
    module_name, sep, function_name = target.rpartition(":")
    if not sep or not module_name or not function_name:
        raise MavisError(
            f"python:{target}: expected python:<module>:<function>, "
            "e.g. python:mypkg.rewards:brevity"
        )
    module = _import(module_name)
    if not hasattr(module, function_name):
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise MavisError(
            f"module {module_name!r} has no function {function_name!r}"
            + (f"; it defines: {', '.join(public)}" if public else "")
        )
    function = getattr(module, function_name)
    if not callable(function):
        kind = type(function).__name__
        raise MavisError(f"{module_name}:{function_name} is a {kind}, not a function")
    return function


def _import(module_name: str) -> ModuleType:
    if module_name.endswith(".py"):
        path = Path(module_name).expanduser()
        if not path.is_file():
            raise MavisError(f"python objective file {module_name!r} does not exist")
        spec = importlib.util.spec_from_file_location(f"mavis_user_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise user_code_error(f"the python objective file {module_name!r}", exc) from exc
        return module
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + "."):  # the module itself
            raise MavisError(
                f"cannot import module {module_name!r} for a python: objective ({exc}); "
                "is it installed or on PYTHONPATH? a file path (./rewards.py) also works"
            ) from None
        # the module exists but one of its own imports is missing: say which
        raise user_code_error(f"the python objective module {module_name!r}", exc) from exc
    except Exception as exc:
        raise user_code_error(f"the python objective module {module_name!r}", exc) from exc


def user_code_error(what: str, exc: BaseException) -> MavisError:
    """`what` failed with `exc`, said on one line (`mavis --verbose` shows the traceback)."""
    message = " ".join(str(exc).split()) or "(no message)"
    return MavisError(f"{what} raised {type(exc).__name__}: {message} (mavis --verbose ... "
                      "shows the traceback)")


def from_spec(spec: str) -> PythonFunction:
    """Build from the part of an objective name after `python:`."""
    return PythonFunction(spec)
