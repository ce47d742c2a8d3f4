"""Every settings class refuses NaN, infinities, values out of range and values of the wrong type
in its own fields, with a `SettingsError` that names the field (`mavis.checks`): before, an
infinite learning rate or a NaN zeta trained silently (exit 0, a wrong result)."""

from __future__ import annotations

import math
import typing
from dataclasses import fields

import pytest

from mavis.baselines.config import MorlhfSettings
from mavis.checks import SettingsError, fraction, names, number, whole
from mavis.evaluation.settings import EvaluationSettings
from mavis.models.value_folder import LoraSettings, ValueModelConfig
from mavis.serving.spec import RayOptions
from mavis.training.config import TrainConfig

BAD_NUMBERS = [math.nan, math.inf, -math.inf, "1e-3", None, True]


def numeric_fields(cls) -> list[tuple[str, bool]]:
    """(name, whether None is a documented value) of every field whose default is a number."""
    default, hints = cls(), typing.get_type_hints(cls)
    return [(f.name, type(None) in typing.get_args(hints[f.name])) for f in fields(cls)
            if isinstance(getattr(default, f.name), int | float)
            and not isinstance(getattr(default, f.name), bool)]


@pytest.mark.parametrize("cls", [TrainConfig, MorlhfSettings, EvaluationSettings, RayOptions])
def test_every_number_refuses_nan_infinity_and_other_types(cls):
    checked = numeric_fields(cls)
    assert len(checked) >= 2
    for name, optional in checked:
        for value in BAD_NUMBERS:
            if value is None and optional:
                continue  # None is a documented choice there (all layers, no clipping, ...)
            with pytest.raises(SettingsError) as caught:
                cls(**{name: value})
            assert caught.value.field == name, (name, value)
            assert repr(value) in str(caught.value) or str(value) in str(caught.value)


@pytest.mark.parametrize("cls, name, value, words", [
    (TrainConfig, "lr", 0.0, "lr is 0; give a number > 0"),
    (TrainConfig, "zeta", -1.0, "zeta is -1; give a number >= 0"),
    (TrainConfig, "validation_fraction", 1.0, "in [0, 1)"),
    (TrainConfig, "lora_r", -1, "lora_r is -1; give a whole number >= 0"),
    (TrainConfig, "batch_size", 2.5, "give a whole number"),
    (TrainConfig, "num_layers", 0, "(or none: all layers)"),
    (TrainConfig, "objectives", ["a", "a"], "names 'a' more than once"),
    (TrainConfig, "device", "cuda:0", "choose 'auto', 'cpu', 'cuda'"),
    (TrainConfig, "shared", "yes", "give true or false"),
    (MorlhfSettings, "kl_coef", 0.0, "kl_coef is 0; give a number > 0"),
    (MorlhfSettings, "num_generations", 1, "num_generations is 1; give a whole number >= 2"),
    (MorlhfSettings, "learning_rate", math.inf, "learning_rate is inf"),
    (MorlhfSettings, "max_grad_norm", math.nan, "max_grad_norm is nan"),
    (MorlhfSettings, "objectives", ["harmless", "harmless"], "more than once"),
    (EvaluationSettings, "num_samples", 0, "num_samples is 0"),
    (RayOptions, "replicas", 0, "replicas is 0"),
    (RayOptions, "cpus_per_replica", -1.0, "cpus_per_replica is -1"),
])
def test_out_of_range_values_name_the_field(cls, name, value, words):
    with pytest.raises(SettingsError, match="^" + name) as caught:
        cls(**{name: value})
    assert caught.value.field == name and words in str(caught.value)


@pytest.mark.parametrize("changes, field", [
    ({"num_layers": "one"}, "num_layers"),
    ({"objectives": ["a", "a"]}, "objectives"),
    ({"value_range": {"a": [0, math.nan]}}, "value_range.a"),
    ({"value_range": {"a": [1.0, 0.0]}}, "value_range.a"),
    ({"value_scale": {"a": -1.0}}, "value_scale.a"),
    ({"value_scale": ["a"]}, "value_scale"),
    ({"format_version": 0}, "format_version"),
    ({"tokenizer_fingerprint": 7}, "tokenizer_fingerprint"),
])
def test_value_model_config_checks_its_fields(changes, field):
    with pytest.raises(SettingsError) as caught:
        ValueModelConfig(**{"base": "m", "objectives": ["a"], **changes})
    assert caught.value.field == field


def test_lora_settings_check_their_fields():
    for changes, field in (({"r": "4"}, "lora.r"), ({"alpha": math.nan}, "lora.alpha"),
                           ({"dropout": 1.0}, "lora.dropout"),
                           ({"target_modules": []}, "lora.target_modules")):
        with pytest.raises(SettingsError) as caught:
            LoraSettings(**changes)
        assert caught.value.field == field


def test_the_checks_themselves():
    assert number("x", 3) == 3.0 and isinstance(number("x", 3), float)
    assert number("x", math.inf, low=0, infinite=True) == math.inf
    assert whole("n", 5, low=1) == 5 and fraction("p", 1) == 1.0
    assert names("o", ("a", "b")) == ["a", "b"]
    for call, words in ((lambda: number("x", -math.inf, low=0, infinite=True), "(or inf)"),
                        (lambda: number("x", 0, low=0, low_open=True), "> 0"),
                        (lambda: fraction("p", 0, low_open=True), "in (0, 1]"),
                        (lambda: whole("n", 2**64, low=0, high=2**64 - 1), "from 0 to"),
                        (lambda: names("o", "ab"), "list of one or more names")):
        with pytest.raises(SettingsError, match=words.replace("(", r"\(").replace(")", r"\)")):
            call()
