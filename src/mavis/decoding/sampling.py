"""`SamplingSettings`: how one answer is decoded, as one frozen, validated value.

Every way in builds it once and passes it whole (in the spirit of vLLM's `SamplingParams` and
transformers' `GenerationConfig`): the command line's options, the server's request body,
recipes, evaluation, tree collection, beam search and the library

    decoder.generate(prompts, weights={"relevant": 0.7, "harmless": 0.3})
    decoder.generate(prompts, SamplingSettings(weights=..., beta=4, kl_budget=None, seed=0))

and the decoding state reads each row's knobs from it. No torch here: the command line and the
server check settings before any model loads.

The rules, the same everywhere:
    guidance   neither beta nor kl_budget: beta up to DEFAULT_BETA under a budget of
               DEFAULT_KL_BUDGET nats per answer; a beta alone is a fixed beta; a budget alone
               caps the default beta; kl_budget inf means no budget.
    weights    relative: they are normalised to sum 1 (and reported so). None: every objective
               the decoder has a value model for gets the same weight. beta 0 (or no value
               model loaded) is plain top-k sampling from the reference, reported as beta 0.
    temperature  0 is greedy decoding.
    seed       None (a random seed) or a whole number from 0 to 2**64 - 1.

A value it cannot take raises `SettingsError`, whose `field` names the setting, so that the
command line names its option and the server OpenAI's `param` without checking again.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mavis.checks import SettingsError
from mavis.checks import flag as _flag
from mavis.checks import fraction as _fraction
from mavis.checks import number as _number
from mavis.checks import whole as _whole
from mavis.errors import MavisError

# The guidance when told neither a beta nor a KL budget: up to DEFAULT_BETA (values are in
# units of each objective's typical sibling difference), lowered at each step so that steering
# adds at most DEFAULT_KL_BUDGET nats per answer over plain top-k sampling. The steps that
# `certain_p` leaves plain spend none of their share, so at its default about half the steps
# are guided and answers add 8-10 nats (reports/steering, 2026-12-03 evening: 18 with
# certain_p 0.5 gains more reward than 10 with 0.9, at less cost).
DEFAULT_BETA = 16.0
DEFAULT_KL_BUDGET = 18.0
# Beyond this the tilt is an argmax of the values already; a cap keeps beta * value finite.
MAX_BETA = 1e4
MAX_SEED = 2**64 - 1
# Temperatures below this overflow the logits (0 itself means greedy decoding).
MIN_TEMPERATURE = 1e-2


def knob(default: Any, help: str, option: str | None = None) -> Any:
    """A field of `SamplingSettings` with its help text, which the command line shows (and
    `option`, its flag when not `--field-name`)."""
    return field(default=default, metadata={"help": help, "option": option})


@dataclass(frozen=True)
class SamplingSettings:
    """How one answer is decoded (see the module for the rules). Frozen: change it with
    `dataclasses.replace`, which keeps every other field as it is (beta and kl_budget were
    resolved when the value was built)."""

    weights: dict[str, float] | None = knob(
        None, "Objective weights, e.g. relevant=0.6,harmless=0.4 (relative: normalised to sum "
        "1). Default: every loaded objective the same weight.")
    beta: float | None = knob(
        None, f"Guidance strength (the most, under a KL budget); 0: plain top-k sampling from "
        f"the reference. Default: {DEFAULT_BETA:g} under a KL budget of "
        f"{DEFAULT_KL_BUDGET:g} nats per answer; a beta alone is a fixed beta.")
    kl_budget: float | None = knob(
        None, "Nats of KL per answer that steering may add over plain top-k sampling: each "
        "step's beta is the largest up to beta within budget / max-new-tokens (inf: none). "
        f"Default: {DEFAULT_KL_BUDGET:g} when no beta is given, else none.")
    top_k: int = knob(40, "Candidates of the reference model per step (at most the "
                      "vocabulary).")
    top_p: float = knob(1.0, "Nucleus within the top-k: keep the most likely candidates whose "
                        "probability adds up to top_p (1: all k).")
    min_p: float = knob(0.0, "Keep only the candidates at least min_p times as likely as the "
                        "most likely one (0: all k).")
    certain_p: float = knob(0.5, "A step whose most likely candidate has at least this "
                            "probability is sampled from plain top-k; the value models read "
                            "only the drawn token (1: every step is guided).")
    value_min_p: float = knob(0.0, "The value models score only the candidates at least "
                              "this times as likely as the most likely one; the others keep "
                              "their top-k probability, tilted by the scored ones' mean value "
                              "(0: score all k).")
    temperature: float = knob(1.0, "Of the reference's next-token distribution; 0: greedy.")
    greedy: bool = knob(False, "Take the most likely token of the tilted distribution.")
    max_new_tokens: int = knob(64, "The longest answer, in tokens.")
    stop: tuple[str, ...] = knob((), "Stop string (repeatable): the answer ends before it.")
    seed: int | None = knob(None, "Seed of the sampling (0 to 2**64 - 1; default: random).")
    ignore_eos: bool = knob(False, "Keep generating past the end-of-sequence token.")
    candidate_epsilon: float = knob(
        0.0, "Skip candidates whose omission moves each step's distribution by at most this "
        "total variation (needs value ranges; 0: score all k).", option="--epsilon")

    def __post_init__(self) -> None:
        def assign(name: str, value: Any) -> None:  # frozen: fields are set once, here
            object.__setattr__(self, name, value)

        beta, budget = _guidance(self.beta, self.kl_budget)
        temperature = _number("temperature", self.temperature, low=0.0)
        if 0 < temperature < MIN_TEMPERATURE:
            raise SettingsError("temperature", f"is {temperature:g}; give 0 (greedy) or a "
                                f"number >= {MIN_TEMPERATURE:g}")
        assign("weights", _weights(self.weights))
        assign("beta", beta)
        assign("kl_budget", budget)
        assign("top_k", _whole("top_k", self.top_k, low=1))
        assign("top_p", _fraction("top_p", self.top_p, low_open=True))
        assign("min_p", _fraction("min_p", self.min_p, low_open=False))
        assign("certain_p", _fraction("certain_p", self.certain_p, low_open=True))
        assign("value_min_p", _fraction("value_min_p", self.value_min_p, low_open=False))
        assign("temperature", temperature)
        assign("greedy", _flag("greedy", self.greedy) or temperature == 0)
        assign("max_new_tokens", _whole("max_new_tokens", self.max_new_tokens, low=1))
        assign("stop", _stops(self.stop))
        assign("seed", None if self.seed is None else _whole("seed", self.seed, low=0,
                                                             high=MAX_SEED))
        assign("ignore_eos", _flag("ignore_eos", self.ignore_eos))
        epsilon = _number("candidate_epsilon", self.candidate_epsilon, low=0.0)
        if epsilon >= 1:
            raise SettingsError("candidate_epsilon", f"is {epsilon:g}; give a number in [0, 1) "
                                "(0: score every candidate)")
        assign("candidate_epsilon", epsilon)

    @property
    def step_kl_budget(self) -> float | None:
        """The KL budget per step: kl_budget (nats per answer) / max_new_tokens, or None. The
        one place where the budget per answer becomes the allowance of each step, so an answer
        of T tokens adds at most T * step_kl_budget <= kl_budget nats."""
        return None if self.kl_budget is None else self.kl_budget / self.max_new_tokens

    @property
    def step_temperature(self) -> float:
        """The temperature the decoding state divides the logits by (1 for temperature 0, which
        is greedy decoding)."""
        return self.temperature or 1.0

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON has it (weights a mapping, stop a list)."""
        data = asdict(self)
        data["stop"] = list(self.stop)
        return data


# The defaults a results file's identity leaves unnamed: each field's default when files began
# to name only the fields that differ from it. A default changed since keeps its old value
# here, so that a file made under the old default is not taken for one made under the new.
CHANGED_DEFAULTS = {"certain_p": 1.0}  # 0.9 since 2026-12-02, 0.5 since 2026-12-03


def unnamed_defaults() -> dict[str, Any]:
    """`SamplingSettings().to_dict()` with `CHANGED_DEFAULTS`' old values."""
    return {**SamplingSettings().to_dict(), **CHANGED_DEFAULTS}


# What evaluation and tree collection change in these defaults: answers of 48 tokens (trees as
# long as the answers evaluated) and seed 0 (a rerun gives the same answers and trees).
REPRODUCIBLE = {"max_new_tokens": 48, "seed": 0}


def reproducible(**given: Any) -> SamplingSettings:
    """`SamplingSettings(**given)` with `REPRODUCIBLE`'s defaults where `given` is silent."""
    return SamplingSettings(**{**REPRODUCIBLE, **given})


def sampling_fields() -> list[str]:
    """The names of `SamplingSettings`' fields, in order."""
    return [f.name for f in fields(SamplingSettings)]


def build_sampling(settings: SamplingSettings | None, given: Mapping[str, Any]
                   ) -> SamplingSettings:
    """`settings`, or a `SamplingSettings` built from the fields in `given`; not both (a field
    given beside a settings value would be a second source of truth)."""
    unknown = sorted(set(given) - set(sampling_fields()))
    if unknown:
        raise MavisError(f"unknown sampling setting(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sampling_fields())}")
    if settings is None:
        return SamplingSettings(**given)
    if given:
        raise MavisError(f"give a SamplingSettings or its fields ({', '.join(given)}), not "
                         "both; change one with dataclasses.replace(settings, ...)")
    return settings


# -- checks -----------------------------------------------------------------------------------
def _guidance(beta: Any, kl_budget: Any) -> tuple[float, float | None]:
    """(beta, KL budget per answer or None) by the guidance rule of the module."""
    budget = None if kl_budget is None else _number("kl_budget", kl_budget, low=0.0,
                                                    infinite=True)
    if beta is None:
        beta = DEFAULT_BETA
        budget = DEFAULT_KL_BUDGET if kl_budget is None else budget
    beta = _number("beta", beta, low=0.0)
    if beta > MAX_BETA:
        raise SettingsError("beta", f"is {beta:g}; give a number from 0 to {MAX_BETA:g} "
                            "(beyond, the tilt is already an argmax of the values)")
    return beta, (None if budget == math.inf else budget)


def _stops(value: Any) -> tuple[str, ...]:
    stops = (value,) if isinstance(value, str) else value
    if not isinstance(stops, Sequence) or not all(isinstance(s, str) for s in stops):
        raise SettingsError("stop", f"is {value!r}; give a list of strings")
    if any(not s for s in stops):
        raise SettingsError("stop", "holds an empty string, which would stop at once; give "
                            "non-empty stop strings")
    return tuple(stops)


def _weights(value: Any) -> dict[str, float] | None:
    """Weights checked (names, finite numbers >= 0, one positive) and normalised to sum 1;
    None or empty: None."""
    if value is None or (isinstance(value, Mapping) and not value):
        return None
    if not isinstance(value, Mapping):
        raise SettingsError("weights", f"is {value!r}; give objective names and weights, e.g. "
                            "relevant=0.6,harmless=0.4")
    checked: dict[str, float] = {}
    for name, weight in value.items():
        if not isinstance(name, str) or not name.strip():
            raise SettingsError("weights", f"names an objective {name!r}; give objective "
                                "names (see `mavis objectives list`)")
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) \
                or not math.isfinite(weight) or weight < 0:
            raise SettingsError("weights", f"give {name!r} the weight {weight!r}; weights must "
                                "be finite numbers >= 0")
        checked[name] = float(weight)
    largest = max(checked.values())
    if largest <= 0:
        raise SettingsError("weights", "are all zero; give at least one objective a positive "
                            "weight (beta 0 is plain sampling from the reference)")
    if abs(sum(checked.values()) - 1.0) <= 1e-9:
        return checked
    scaled = {name: weight / largest for name, weight in checked.items()}  # no overflow
    total = sum(scaled.values())
    return {name: weight / total for name, weight in scaled.items()}
