"""The command line under random input (hypothesis), run in this process through
`mavis.cli.main`, the function the console script calls:

- one option of one command at a time, with a random value of its type (NaN, infinities,
  huge and negative numbers among them): a value its settings class refuses
  (`SamplingSettings`, `TrainConfig`, `ServerLimits`, `RayOptions`, ... decide, not this file)
  exits 2 with an error naming the option; any value: no traceback;
- several options at once with random text: no traceback;
- the file readers given files of random bytes: no traceback, and text that is not UTF-8 is
  refused.

No traceback means: exit code 0, 1 or 2, and on failure stderr is click's usage message or
ends in exactly one `error: ...` line; a failed command leaves nothing behind. Each command
runs on the tiny model the tests build, or fails before any model loads, so the examples are
bounded (`max_examples`) to well under a minute in all.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mavis.checks import SettingsError
from mavis.cli import main
from mavis.cli.options import parse_weights
from mavis.cli.sampling import option_name
from mavis.decoding.sampling import SamplingSettings
from mavis.errors import MavisError
from mavis.serving.spec import RayOptions, ServerLimits
from mavis.training.config import TrainConfig
from mavis.trees.settings import CollectionSettings

pytestmark = pytest.mark.usefixtures("one_thread")
# MAVIS_FUZZ_EXAMPLES=1000 for a deeper search than the test suite's.
FUZZ = settings(max_examples=int(os.environ.get("MAVIS_FUZZ_EXAMPLES", "60")), deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


# -- what a run may look like -----------------------------------------------------------------
@dataclass
class Outcome:
    code: int
    out: str
    err: str
    left: list[str]

    @property
    def usage(self) -> bool:
        return "Usage: mavis" in self.err

    @property
    def error_line(self) -> str:
        return self.err.strip().splitlines()[-1] if self.err.strip() else ""


def run(argv: list[str], fx: dict[str, str]) -> Outcome:
    """`main(argv)` ({fx}, {lm}, {vm}, {missing} filled in) in a fresh working folder."""
    args = list(argv)
    for key in ("fx", "lm", "vm", "missing"):
        args = [a.replace("{" + key + "}", fx[key]) for a in args]
    here = os.getcwd()
    folder = tempfile.mkdtemp(dir=fx["work"])
    out, err = io.StringIO(), io.StringIO()
    try:
        os.chdir(folder)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
    finally:
        os.chdir(here)
    return Outcome(code, out.getvalue(), err.getvalue(), os.listdir(folder))


def check_clean(outcome: Outcome, argv: list[str]) -> None:
    """No traceback: a known exit code, and a failure says so in one line (or the usage)."""
    where = f"{argv}\n{outcome.err[-2000:]}"
    assert outcome.code in (0, 1, 2), where
    assert "Traceback" not in outcome.err, where
    if outcome.code != 0:
        errors = [line for line in outcome.err.splitlines() if line.startswith("error: ")]
        assert outcome.usage or (len(errors) == 1 and outcome.error_line == errors[0]), where
        assert not outcome.left, f"a failed command left {outcome.left}: {where}"


@pytest.fixture(scope="module")
def fx(tmp_path_factory, tiny_lm) -> dict[str, str]:
    from mavis.models.value_model import ValueModel

    root = tmp_path_factory.mktemp("fuzz")
    vm = ValueModel.build(str(tiny_lm), ["a"], num_layers=1, lora=None).save(root / "vm")
    (root / "damaged.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(500))
    (root / "work").mkdir()
    return {"lm": str(tiny_lm), "vm": str(vm), "fx": str(root), "work": str(root / "work"),
            "missing": str(root / "missing")}


# -- one option at a time: a value of its type, and the settings class as the judge ----------
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.0, -0.0, 1e-3, 5e-3, 0.5, 1.0, 2.0, -1.0, 1e308]))
INTS = st.one_of(st.integers(-3, 40), st.sampled_from([-(2**70), 2**64 - 1, 2**64, 2**70]))
SMALL = st.integers(-3, 3)  # counts a valid run pays for (answers, beams, tokens)


def refused_by(build: Callable[[Any], Any]) -> Callable[[Any], bool]:
    """Whether `build(value)` (a settings class given the value) refuses it."""
    def refuses(value: Any) -> bool:
        try:
            build(value)
        except (SettingsError, MavisError):
            return True
        return False
    return refuses


@dataclass(frozen=True)
class Option:
    command: tuple[str, ...]  # the command before the option: cheap, and valid on its own
    flag: str
    values: st.SearchStrategy
    refuses: Callable[[Any], bool]
    names: tuple[str, ...] = ()  # words of an error about it (default: the flag)


def _sampling(field: str) -> Callable[[Any], bool]:
    if field == "weights":  # "" is the option's default: every loaded objective alike
        return refused_by(lambda text: SamplingSettings(
            weights=parse_weights(text) if text else None))
    if field == "stop":
        return refused_by(lambda text: SamplingSettings(stop=(text,)))
    return refused_by(lambda value: SamplingSettings(**{field: value}))


def _sampling_values(field: str) -> st.SearchStrategy:
    hint = {f.name: f.type for f in fields(SamplingSettings)}[field]
    if field == "max_new_tokens":
        return st.one_of(SMALL, st.sampled_from([-(2**64), 0]))
    if field == "weights":
        pairs = st.tuples(st.sampled_from(["a", "b", "", " "]), FLOATS.map(repr))
        return st.one_of(st.lists(pairs, max_size=3).map(
            lambda ps: ",".join(f"{n}={v}" for n, v in ps)), st.text(max_size=12))
    if field == "stop":
        return st.text(max_size=4)
    return INTS if "int" in str(hint) else FLOATS


GENERATE = ("generate", "hi", "--model", "{lm}", "--max-new-tokens", "2")
SAMPLING = [Option(GENERATE, option_name(f.name), _sampling_values(f.name), _sampling(f.name))
            for f in fields(SamplingSettings) if f.name not in ("greedy", "ignore_eos")]
COUNTS = [
    Option(GENERATE, "-n", SMALL, lambda n: n < 1, ("--num-samples",)),
    Option(GENERATE, "--beam", SMALL, lambda n: n < 0),
    Option(GENERATE, "--prune-every", SMALL, lambda n: n < 1),
    Option(GENERATE, "--best-of", SMALL, lambda n: n < 0 or n == 1),
]

TRAIN = ("train", "--data", "{fx}/damaged.h5", "--out", "out")


def _train(field: str) -> Callable[[Any], bool]:
    config = refused_by(lambda value: TrainConfig(**{field: value}))
    if field == "eval_every":  # the command line's 0: evaluate at epoch ends
        return lambda value: value < 0 or (value != 0 and config(value))
    return config


TRAINING = [
    *[Option(TRAIN, "--" + name.replace("_", "-"), INTS if kind == "int" else FLOATS,
             _train(name))
      for name, kind in (("lr", "float"), ("zeta", "float"), ("weight_decay", "float"),
                         ("lora_dropout", "float"), ("leaf_fraction", "float"),
                         ("validation_fraction", "float"), ("sibling_weight", "float"),
                         ("warmup_steps", "int"), ("batch_size", "int"), ("epochs", "int"),
                         ("lora_r", "int"), ("lora_alpha", "int"), ("eval_every", "int"),
                         ("max_steps", "int"), ("max_length", "int"), ("num_layers", "int"),
                         ("seed", "int"))],
    *[Option(TRAIN, "--" + name.replace("_", "-"), st.sampled_from([*choices, "", "nosuch"]),
             _train(name))
      for name, choices in (("device", ("auto", "cpu")), ("mixed_precision", ("auto", "no")),
                            ("select_best_by", ("val_loss", "sibling_accuracy")))],
]

COLLECT = ("collect", "--out", "x.h5", "--model", "{missing}")


def _collection(field: str) -> Callable[[Any], bool]:
    return refused_by(lambda value: CollectionSettings(**{field: value}))


COLLECTION = [
    Option(COLLECT, "--T", INTS, _sampling("max_new_tokens")),
    *[Option(COLLECT, flag, INTS, _collection(name))
      for flag, name in (("--L", "L"), ("--K", "K"), ("--K-root", "K_root"),
                         ("--batch-prompts", "batch_prompts"),
                         ("--extra-children", "extra_children"))],
    Option(COLLECT, "--limit", INTS, lambda n: n < 1),
    Option(COLLECT, "--max-prompt-tokens", INTS, lambda n: n < 1),
    Option(COLLECT, "--iteration", INTS, lambda n: n < 0),
    Option(COLLECT, "--workers", st.integers(-3, 0), lambda n: n < 0),
]

SERVE = ("serve", "--model", "{missing}", "--value-model", "a={vm}", "--port", "0")
SERVING = [
    *[Option(SERVE, "--" + name.replace("_", "-"), INTS,
             refused_by(lambda v, n=name: ServerLimits(**{n: v})), (name.replace("_", "-"),))
      for name in ("max_batch", "max_queue")],
    Option(SERVE, "--max-tokens", INTS, refused_by(lambda v: ServerLimits(  # as serve has it
        max_tokens=v, default_max_tokens=min(ServerLimits().default_max_tokens, v))),
        ("max-tokens",)),
    Option(SERVE, "--replicas", INTS, refused_by(lambda v: RayOptions(replicas=v))),
    Option(SERVE, "--cpus-per-replica", FLOATS,
           refused_by(lambda v: RayOptions(cpus_per_replica=v))),
    Option(SERVE, "--log-level", st.sampled_from(["info", "debug", "", "nosuch", "WARN"]),
           lambda v: v not in ("critical", "error", "warning", "info", "debug", "trace")),
]

EVALUATE = ("evaluate", "--objectives", "positive", "--model", "{missing}")
JUDGE = ("judge", "{fx}/missing.jsonl", "{fx}/missing.jsonl", "--objective", "helpful",
         "--base-url", "http://127.0.0.1:9/v1", "--model", "m")
OTHERS = [
    Option(EVALUATE, "--limit", INTS, lambda n: n < 1),
    Option(EVALUATE, "-n", INTS, lambda n: n < 1, ("--num-samples",)),
    Option(EVALUATE, "--best-of", INTS, lambda n: n < 0 or n == 1),
    Option(EVALUATE, "--beam", INTS, lambda n: n < 0 or n == 1, ("--beam",)),
    *[Option(EVALUATE, option_name(name), FLOATS, _sampling(name))
      for name in ("beta", "kl_budget", "temperature", "top_p", "min_p", "value_min_p",
                   "candidate_epsilon")],
    *[Option(("prompts", "show", "chitchat"), flag, INTS, lambda n: n < 0)
      for flag in ("--limit", "--max-tokens", "--seed")],
    *[Option(("pareto", "--objectives", "positive,harmless", "--methods", "beam", "--model",
              "{missing}"), flag,
             INTS, lambda n: n < 1) for flag in ("--beam-expand", "--beam-prune-every")],
    Option(("data", "score", "{fx}/damaged.h5", "--objectives", "positive"), "--chunk-leaves",
           INTS, lambda n: n < 1),
    Option(JUDGE, "--limit", INTS, lambda n: n < 1),
    Option(JUDGE, "--max-tokens", INTS, lambda n: n < 1),
    Option(JUDGE, "--workers", INTS, lambda n: n < 1),
    Option(JUDGE, "--temperature", FLOATS, lambda x: not 0 <= x < math.inf),
    Option(JUDGE, "--timeout", FLOATS, lambda x: not 0 < x < math.inf),
    Option(("bundle", "{fx}", "name"), "--iteration", INTS, lambda n: n < 0),
]


def fuzz_options(options: list[Option]):
    @FUZZ
    @given(st.data())
    def test(fx, data):
        option = data.draw(st.sampled_from(options), label="option")
        value = data.draw(option.values, label=option.flag)
        shown = repr(value) if isinstance(value, float) else str(value)
        argv = [*option.command, option.flag, shown]
        outcome = run(argv, fx)
        check_clean(outcome, argv)
        if option.refuses(value):
            assert outcome.code == 2, f"{argv} was accepted: {outcome.err[-500:]}"
            if not outcome.usage:
                words = option.names or (option.flag,)
                assert any(w in outcome.error_line for w in words), (argv, outcome.error_line)
    return test


test_sampling_options_of_generate = fuzz_options(SAMPLING + COUNTS)
test_training_options = fuzz_options(TRAINING)
test_collection_options = fuzz_options(COLLECTION)
test_server_options = fuzz_options(SERVING)
test_other_commands_options = fuzz_options(OTHERS)


# -- several options at once, random text -----------------------------------------------------
# What a shell can pass: any text but NUL (argv entries are C strings).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=10)
WORDS = st.one_of(TEXT, st.sampled_from(
    ["nan", "inf", "-1", "0", "1e309", "a,a", "0,0,1", "a=1,a=2", "relevant,", ",", "=",
     "0:1:2", "1,2", "positive,positive", "cuda:7", "x.xyz", "{fx}", "{fx}/vm", "{missing}"]))
MIXED = {
    GENERATE: ["--weights", "--beta", "--kl-budget", "--top-k", "--stop", "--seed", "-n",
               "--device", "--value-model", "--rank", "--best-of"],
    TRAIN: ["--objectives", "--lr", "--zeta", "--device", "--init-from", "--base",
            "--select-best-by", "--mixed-precision"],
    ("pareto", "--model", "{missing}"): ["--objectives", "--lambdas", "--methods", "--beta",
                                         "--best-of", "--beams", "--hv-reference", "--out",
                                         "--morlhf-lambdas", "--prompts", "-n"],
    EVALUATE: ["--objectives", "--weights", "--prompts", "--split", "--rank", "--out",
               "--answers", "--value-model"],
    COLLECT: ["--objectives", "--prompts", "--split", "--dtype", "--weights", "--device",
              "--value-model"],
    ("report", "distill", "{fx}"): ["--beta", "--teacher", "--prompts", "--model"],
    ("score", "-p", "hi", "-r", "there"): ["-o"],
    SERVE: ["--log-level", "--host", "--device", "--served-name"],
}


@FUZZ
@given(st.data())
def test_several_options_of_random_text(fx, data):
    command = data.draw(st.sampled_from(sorted(MIXED)), label="command")
    flags = data.draw(st.lists(st.sampled_from(MIXED[command]), min_size=1, max_size=4,
                               unique=True), label="options")
    argv = list(command)
    for flag in flags:
        argv += [flag, data.draw(WORDS, label=flag)]
    if "--port" not in argv and command[0] == "serve":
        argv += ["--port", "0"]
    check_clean(run(argv, fx), argv)


# -- the file readers, given random bytes -----------------------------------------------------
READERS = [
    (("score", "-f", "{file}"), ".jsonl"),
    (("prompts", "show", "{file}", "--split", "all"), ".jsonl"),
    (("prompts", "show", "{file}", "--split", "all"), ".csv"),
    (("prompts", "show", "{file}", "--split", "all"), ".json"),
    (("data", "inspect", "{file}"), ".h5"),
    (("train", "--data", "{file}", "--out", "out"), ".h5"),
    (("iterate", "{file}", "--iterations", "0"), ".yaml"),  # a valid recipe: refused cheaply
    (("report", "iterations", "{folder}", "--out", "report"), "results.jsonl"),
    (("generate", "hi", "--model", "{lm}", "--weights", "a=1", "--value-model", "a={folder}"),
     "value_config.json"),
    (("generate", "hi", "--model", "{lm}", "--weights", "a=1", "--value-model", "a={folder}"),
     "head.safetensors"),
]
BYTES = st.one_of(st.binary(max_size=300), TEXT.map(str.encode),
                  st.sampled_from([b"", b"\xff\xfe", b'{"prompt": 1}\n', b"prompt\n\xe9\n",
                                   b'{"promt": "x"}\n', b"[1, 2]", b"null", b"name: [x\n"]))


@FUZZ
@given(st.data())
def test_file_readers_on_random_bytes(fx, data):
    command, name = data.draw(st.sampled_from(READERS), label="reader")
    content = data.draw(BYTES, label="bytes")
    folder = Path(tempfile.mkdtemp(dir=fx["fx"]))
    if name in ("value_config.json", "head.safetensors"):  # a value model, one file bad
        for part in Path(fx["vm"]).iterdir():
            (folder / part.name).write_bytes(part.read_bytes())
    target = folder / name if not name.startswith(".") else folder / f"file{name}"
    target.write_bytes(content)
    argv = [a.replace("{file}", str(target)).replace("{folder}", str(folder))
            for a in command]
    outcome = run(argv, fx)
    check_clean(outcome, argv)
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        if name.endswith((".jsonl", ".csv", ".json", ".yaml")):
            assert outcome.code != 0, f"{argv}: text that is not UTF-8 was read"
