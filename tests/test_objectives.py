"""Objectives: every built-in on real text, hf: on tiny classifiers built here, python:, the CLI.

Nothing is downloaded. The chitchat heads are fitted on 200 conversations into a temporary
MAVIS_CACHE (a few seconds), never the full fit.
"""

from __future__ import annotations

import json
import math
import textwrap

import pytest

from mavis.cli import main
from mavis.errors import MavisError
from mavis.objectives import (
    Objective,
    clear_objective_cache,
    get_objective,
    list_objectives,
    parse_objective_names,
    score_all,
)
from mavis.objectives.chitchat import ChitchatRating, fit_chitchat_heads, pair_text

CHITCHAT_LIMIT = 200

CLEAN = "Thank you for asking, I am happy to help you with that."
OFFENSIVE = "Shut up, you stupid worthless idiot."
GOOD_REVIEW = "This movie was wonderful, I loved every minute of it."
BAD_REVIEW = "A terrible, boring film. I hated it."
BREAD = "How do I bake bread at home?"
ON_TOPIC = "Mix flour, water, yeast and salt, knead the dough, let it rise, then bake it."
OFF_TOPIC = "The stock market fell sharply today after the central bank raised interest rates."


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("mavis-cache")


@pytest.fixture(autouse=True)
def _isolated(cache_root, monkeypatch):
    """Every test writes to a temporary cache and builds its objectives afresh."""
    monkeypatch.setenv("MAVIS_CACHE", str(cache_root))
    monkeypatch.delenv("MAVIS_CHITCHAT_LIMIT", raising=False)
    clear_objective_cache()
    yield
    clear_objective_cache()


# --- built-ins on real text -------------------------------------------------------------------


def test_registry_lists_builtins_with_descriptions():
    listed = dict(list_objectives())
    for name in ("harmless", "positive", "relevant", "witty", "upbeat", "interesting"):
        assert name in listed and listed[name], name
    assert "\n" not in "".join(listed.values())


def test_harmless_prefers_clean_text():
    clean, offensive = get_objective("harmless").score(["Hi", "Hi"], [CLEAN, OFFENSIVE])
    assert clean > 0.9
    assert offensive < 0.2


def test_positive_follows_sentiment():
    good, bad = get_objective("positive").score(["Review?", "Review?"], [GOOD_REVIEW, BAD_REVIEW])
    assert good > 0.5
    assert bad < -0.5


def test_relevant_prefers_on_topic_answer():
    on, off = get_objective("relevant").score([BREAD, BREAD], [ON_TOPIC, OFF_TOPIC])
    assert on > off + 0.2
    assert -1.0 <= off < on <= 1.0


def test_objectives_are_built_once_and_empty_batches_are_fine():
    assert get_objective("positive") is get_objective("positive")
    assert get_objective("positive").name == "positive"
    assert get_objective("harmless").score([], []) == []


def test_score_all_matches_each_objective():
    prompts, responses = [BREAD, "Review?"], [ON_TOPIC, BAD_REVIEW]
    scores = score_all("harmless, positive,relevant", prompts, responses)
    assert list(scores) == ["harmless", "positive", "relevant"]
    for name, values in scores.items():
        assert values == get_objective(name).score(prompts, responses)


def test_custom_objective_subclass():
    class Words(Objective):
        def _score(self, prompts, responses):
            return [len(r.split()) for r in responses]

    assert Words().score(["p", "p"], ["one two", "one"]) == [2.0, 1.0]


# --- chitchat heads (small fit into the temporary cache) ---------------------------------------


@pytest.fixture(scope="module")
def small_fit(cache_root):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MAVIS_CACHE", str(cache_root))
        return fit_chitchat_heads(CHITCHAT_LIMIT, progress=False)


def test_chitchat_fit_reports_held_out_figures(small_fit, cache_root):
    m = small_fit.metrics
    assert m["conversations"] == CHITCHAT_LIMIT
    assert (m["train"], m["held_out"]) == (160, 40)
    assert m["version"].endswith(f"limit{CHITCHAT_LIMIT}")
    for rating in ("witty", "upbeat", "interesting"):
        assert -1.0 <= m[rating]["spearman"] <= 1.0
        assert math.isfinite(m[rating]["r2"])
    assert small_fit.folder.is_relative_to(cache_root)
    assert small_fit.coef.shape == (3, 384)
    # The second call loads the cache instead of fitting again.
    again = fit_chitchat_heads(CHITCHAT_LIMIT, progress=False)
    assert again.metrics == m
    assert (again.coef == small_fit.coef).all()


def test_chitchat_heads_score_finite_ratings(small_fit, monkeypatch):
    monkeypatch.setenv("MAVIS_CHITCHAT_LIMIT", str(CHITCHAT_LIMIT))
    prompts = ["What did you do this weekend?", "Tell me a joke"]
    responses = ["I went hiking with friends, it was amazing!", "ok"]
    for name in ("witty", "upbeat", "interesting"):
        objective = get_objective(name)
        assert isinstance(objective, ChitchatRating) and objective.limit == CHITCHAT_LIMIT
        scores = objective.score(prompts, responses)
        assert len(scores) == 2
        assert all(math.isfinite(s) and 1.0 <= s <= 10.0 for s in scores)
        # Scores are the head applied to the embedded two-turn conversation.
        texts = [pair_text(p, r) for p, r in zip(prompts, responses, strict=True)]
        x = objective._embedder.encode(texts)
        column = ("witty", "upbeat", "interesting").index(name)
        assert scores == pytest.approx(small_fit.predict(x)[:, column].tolist(), abs=1e-5)


def test_chitchat_limit_must_be_a_number(monkeypatch):
    monkeypatch.setenv("MAVIS_CHITCHAT_LIMIT", "lots")
    with pytest.raises(MavisError, match="MAVIS_CHITCHAT_LIMIT='lots' is not a whole number"):
        ChitchatRating("witty")


# --- hf: on tiny classifiers built and saved here ------------------------------------------------

SENTENCES = [
    "the cat sat on the mat",
    "how do i bake bread at home",
    "mix flour water and yeast then bake",
    "you are a kind and helpful friend",
    "human assistant summary article",
]


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=["<unk>", "<eos>"]))
    # GPT-2 style: an end-of-text token and no pad token.
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        eos_token="<eos>",
        model_input_names=["input_ids", "attention_mask"],
    )


def _tiny_classifier(folder, num_labels, id2label=None):
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    tokenizer = _tiny_tokenizer()
    assert tokenizer.pad_token is None
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        num_labels=num_labels,
        id2label=id2label,
        label2id={v: k for k, v in (id2label or {}).items()} or None,
    )
    model = GPT2ForSequenceClassification(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-rm")
    model, tokenizer = _tiny_classifier(folder, 1)
    return folder, model, tokenizer


@pytest.fixture(scope="module")
def pair_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-pair")
    model, tokenizer = _tiny_classifier(folder, 2, {0: "HALLUCINATED", 1: "FAITHFUL"})
    return folder, model, tokenizer


PAIRS = (
    ["how do i bake bread", "the cat", "hi", "how do i bake bread at home"],
    ["mix flour water and yeast then bake it at home", "sat", "you are kind", "bake"],
)


def _direct(model, encoded):
    import torch

    with torch.inference_mode():
        return model(**encoded).logits[0]


def test_hf_scores_equal_a_direct_forward(reward_model):
    folder, model, tokenizer = reward_model
    objective = get_objective(f"hf:{folder}")
    prompts, responses = PAIRS
    scores = objective.score(prompts, responses)  # one padded batch of four lengths
    expected = [
        _direct(model, tokenizer(p + r, return_tensors="pt"))[0].item()
        for p, r in zip(prompts, responses, strict=True)
    ]
    assert scores == pytest.approx(expected, abs=1e-5)
    assert len(set(scores)) == len(scores)


def test_hf_template_option(reward_model):
    folder, model, tokenizer = reward_model
    prompts, responses = PAIRS
    scores = get_objective(f"hf:{folder}?template=hh&batch_size=3").score(prompts, responses)
    expected = [
        _direct(model, tokenizer(f"\n\nHuman: {p}\n\nAssistant: {r}", return_tensors="pt"))[0]
        for p, r in zip(prompts, responses, strict=True)
    ]
    assert scores == pytest.approx([e.item() for e in expected], abs=1e-5)
    custom = get_objective(f"hf:{folder}?template=Q%3A {{prompt}}\\nA%3A {{response}} {{x}}")
    assert custom.format("p {response}", "r") == "Q: p {response}\nA: r {x}"


def test_hf_pair_mode_label_probability(pair_model):
    import torch

    folder, model, tokenizer = pair_model
    objective = get_objective(f"hf:{folder}?pair=1&label=FAITHFUL")
    assert objective.label == 1 and objective.output == "prob"
    prompts, responses = PAIRS
    scores = objective.score(prompts, responses)
    expected = [
        torch.softmax(_direct(model, tokenizer(p, r, return_tensors="pt")), -1)[1].item()
        for p, r in zip(prompts, responses, strict=True)
    ]
    assert scores == pytest.approx(expected, abs=1e-5)
    assert all(0.0 < s < 1.0 for s in scores)


def test_hf_errors(tmp_path, pair_model):
    from mavis.objectives.embeddings import minilm_path

    with pytest.raises(MavisError, match="reward model folder '/no/such/model' does not exist"):
        get_objective("hf:/no/such/model")
    with pytest.raises(MavisError, match=r"is not a Hugging Face model folder \(no config.json\)"):
        get_objective(f"hf:{tmp_path}")
    with pytest.raises(MavisError, match="BertModel model, not a sequence-classification"):
        get_objective(f"hf:{minilm_path()}")
    with pytest.raises(MavisError, match=r"has 2 outputs \(0=HALLUCINATED, 1=FAITHFUL\)"):
        get_objective(f"hf:{pair_model[0]}")
    with pytest.raises(MavisError, match="unknown option 'temp'"):
        get_objective(f"hf:{pair_model[0]}?temp=hh")
    with pytest.raises(MavisError, match="label 'TRUE' is not one of"):
        get_objective(f"hf:{pair_model[0]}?label=TRUE")


# --- python: user functions ---------------------------------------------------------------------


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        textwrap.dedent(
            '''
            def brevity(prompts, responses):
                """1 / (1 + number of words in the response)."""
                return [1 / (1 + len(r.split())) for r in responses]

            def too_few(prompts, responses):
                return [1.0]

            def one_number(prompts, responses):
                return 0.5
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path / "my_rewards.py"


def test_python_function_objective(user_module):
    objective = get_objective("python:my_rewards:brevity")
    assert objective.score(["a", "b"], ["one two three", ""]) == [0.25, 1.0]
    assert objective.description == "1 / (1 + number of words in the response)."
    by_file = get_objective(f"python:{user_module}:brevity")
    assert by_file.score(["a"], ["one"]) == [0.5]


def test_python_function_errors(user_module):
    with pytest.raises(MavisError, match="module 'my_rewards' has no function 'nope'; it defines"):
        get_objective("python:my_rewards:nope")
    with pytest.raises(MavisError, match="cannot import module 'no_such_module_xyz'"):
        get_objective("python:no_such_module_xyz:f")
    with pytest.raises(MavisError, match="returned 1 scores for 2 pairs"):
        get_objective("python:my_rewards:too_few").score(["a", "b"], ["c", "d"])
    with pytest.raises(MavisError, match="returned float, not a list"):
        get_objective("python:my_rewards:one_number").score(["a"], ["c"])
    with pytest.raises(MavisError, match="expected python:<module>:<function>"):
        get_objective("python:my_rewards")


# --- error messages -----------------------------------------------------------------------------


def test_unknown_objective_lists_known_ones():
    with pytest.raises(MavisError) as info:
        get_objective("funny")
    message = str(info.value)
    assert message.startswith("unknown objective 'funny'; known objectives: harmless, interesting")
    assert "witty" in message and "hf:<model-id-or-folder>" in message
    with pytest.raises(MavisError, match="unknown objective 'funny'"):
        parse_objective_names("harmless,funny")


def test_parse_objective_names():
    assert parse_objective_names(" harmless, positive ") == ["harmless", "positive"]
    with pytest.raises(MavisError, match="name 'harmless' more than once"):  # not merged
        parse_objective_names(" harmless, positive ,harmless")
    assert parse_objective_names(["relevant", "hf:some/model"]) == ["relevant", "hf:some/model"]
    with pytest.raises(MavisError, match="no objective given"):
        parse_objective_names(" , ")
    with pytest.raises(MavisError, match="objective 'hf:' is incomplete"):
        parse_objective_names("hf:")


def test_mismatched_lengths_and_bare_strings():
    with pytest.raises(MavisError, match="got 2 prompts and 1 responses"):
        get_objective("positive").score(["a", "b"], ["c"])
    with pytest.raises(MavisError, match="got 1 prompts and 2 responses"):
        score_all(["harmless"], ["a"], ["b", "c"])
    with pytest.raises(MavisError, match="responses must be a list of strings, not a single"):
        get_objective("positive").score(["a"], "great")


# --- command line -------------------------------------------------------------------------------


def test_cli_list(capsys):
    assert main(["objectives", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("harmless", "positive", "relevant", "witty", "upbeat", "interesting"):
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    assert "hf:<model-id-or-folder>" in out and "python:<module-or-file.py>:<function>" in out


def test_cli_show_builtin(capsys):
    assert main(["objectives", "show", "positive"]) == 0
    out = capsys.readouterr().out
    assert "name:" in out and "positive" in out and "vaderSentiment" in out


def test_cli_show_chitchat_prints_held_out_fit(small_fit, monkeypatch, capsys):
    monkeypatch.setenv("MAVIS_CHITCHAT_LIMIT", str(CHITCHAT_LIMIT))
    assert main(["objectives", "show", "witty"]) == 0
    out = capsys.readouterr().out
    fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert float(fields["held-out Spearman"].strip()) == pytest.approx(
        small_fit.metrics["witty"]["spearman"], abs=1e-3
    )
    assert float(fields["held-out R^2"].strip()) == pytest.approx(
        small_fit.metrics["witty"]["r2"], abs=1e-3
    )
    assert "200 (160 fitted, 40 held out)" in fields["conversations"]


def test_cli_score_json(capsys):
    argv = ["score", "--objectives", "harmless,positive", "--prompt", "Hi", "--response", OFFENSIVE]
    assert main([*argv, "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert list(scores) == ["harmless", "positive"]
    direct = get_objective("harmless").score(["Hi"], [OFFENSIVE])[0]
    assert scores["harmless"] == pytest.approx(direct)
    assert scores["harmless"] < 0.2 and scores["positive"] < 0
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[0] == "harmless" and float(lines[0].split()[1]) < 0.2


def test_cli_score_file(tmp_path, capsys):
    rows = [{"prompt": BREAD, "response": ON_TOPIC}, {"prompt": BREAD, "response": OFF_TOPIC}]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["score", "-o", "relevant", "--file", str(path), "--json"]) == 0
    scored = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(scored) == 2 and scored[0]["relevant"] > scored[1]["relevant"]
    assert main(["score", "-o", "relevant", "--file", str(path)]) == 0
    assert "relevant" in capsys.readouterr().out
    path.write_text('{"prompt": "only a prompt"}\n')
    assert main(["score", "-o", "relevant", "--file", str(path)]) == 2
    assert "pairs.jsonl:1: needs string fields 'prompt' and 'response'" in capsys.readouterr().err


def test_cli_errors_are_one_line(capsys):
    assert main(["score", "-o", "harmless,funny", "-p", "a", "-r", "b"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown objective 'funny'; known objectives: harmless")
    assert err.count("\n") == 1
    assert main(["score", "-o", "harmless", "-p", "a"]) == 2
    assert "give --prompt and --response" in capsys.readouterr().err


def test_cli_show_hf_model(pair_model, capsys):
    assert main(["objectives", "show", f"hf:{pair_model[0]}?pair=1&label=1"]) == 0
    out = capsys.readouterr().out
    assert "outputs:" in out and "0=HALLUCINATED, 1=FAITHFUL" in out
    assert "prob of output 1" in out and "tokenizer(prompt, response)" in out
