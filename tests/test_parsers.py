"""The parsers users feed text to, under random input: each returns a value or raises the
package's own error (`MavisError`), never anything else."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mavis.cli.options import (
    parse_assignments,
    parse_betas,
    parse_names,
    parse_numbers,
    parse_weights,
)
from mavis.decoding.sampling import SamplingSettings
from mavis.errors import MavisError
from mavis.prompts.files import load_prompt_file

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
OPTION_TEXT = st.one_of(TEXT, st.lists(st.sampled_from(
    ["a", "b", "=", ",", ":", "0", "1", ".", "-", "5", "e", "nan", "inf", " ", "x"]),
    max_size=12).map("".join))
FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def returns_or_refuses(fn, *args):
    try:
        return fn(*args)
    except MavisError:
        return None


@FAST
@given(OPTION_TEXT)
def test_weights(text):
    weights = returns_or_refuses(parse_weights, text)
    if weights is not None:
        assert weights and all(math.isfinite(w) and w >= 0 for w in weights.values())
        assert any(w > 0 for w in weights.values())
        assert all(name.strip() == name and name for name in weights)


@FAST
@given(st.lists(OPTION_TEXT, max_size=4))
def test_name_value_pairs(items):
    pairs = returns_or_refuses(parse_assignments, items, "--value-model", "a=b")
    if pairs is not None:
        assert len(pairs) == len(items) and all(name and value for name, value in pairs.items())


@FAST
@given(OPTION_TEXT)
def test_lambda_lists_and_betas(text):
    numbers = returns_or_refuses(lambda t: parse_numbers(t, "--lambdas", low=0.0, high=1.0),
                                 text)
    if numbers is not None:
        assert numbers and all(0.0 <= x <= 1.0 for x in numbers)
    betas = returns_or_refuses(parse_betas, text, [0.0, 1.0])
    if isinstance(betas, dict):
        assert {0.0, 1.0} <= set(betas) and all(b >= 0 for b in betas.values())
    elif betas is not None:
        assert betas >= 0


@FAST
@given(OPTION_TEXT, st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 100))
def test_names_and_budgets(text, budget, tokens):
    names = returns_or_refuses(parse_names, text, "--objectives")
    if names is not None:
        assert names and len(set(names)) == len(names)
    settings = returns_or_refuses(lambda: SamplingSettings(kl_budget=budget,
                                                           max_new_tokens=tokens))
    if settings is not None:
        step = settings.step_kl_budget
        assert step is None or (math.isfinite(step) and step >= 0)
        assert tokens >= 1 and (budget != math.inf or step is None)


@FAST
@given(st.binary(max_size=200), st.sampled_from([".jsonl", ".json", ".csv"]))
def test_prompt_files_of_random_bytes(tmp_path_factory, blob, suffix):
    path = Path(tmp_path_factory.mktemp("bytes")) / f"prompts{suffix}"
    path.write_bytes(blob)
    prompts = returns_or_refuses(load_prompt_file, path)
    if prompts is not None:
        assert prompts and all(isinstance(p.text, str) and p.text for p in prompts)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8)


@FAST
@given(st.lists(st.one_of(JSON_VALUES, st.fixed_dictionaries({"prompt": JSON_VALUES})),
                max_size=5), st.sampled_from([".jsonl", ".json"]))
def test_prompt_files_of_random_json(tmp_path_factory, records, suffix):
    path = Path(tmp_path_factory.mktemp("json")) / f"prompts{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        path.write_text(json.dumps(records))
    prompts = returns_or_refuses(load_prompt_file, path)
    if prompts is not None:
        assert all(isinstance(p.text, str) for p in prompts)


@pytest.mark.parametrize("text, expected", [
    ("relevant=0.6,harmless=0.4", {"relevant": 0.6, "harmless": 0.4}),
    (" a = 1 , b=0 ", {"a": 1.0, "b": 0.0}),
])
def test_weights_examples(text, expected):
    assert parse_weights(text) == expected
