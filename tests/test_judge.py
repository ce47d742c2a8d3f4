"""`mavis judge`: verdicts parsed, answer files paired, the two orders combined, the win-rate
arithmetic (pure tests, and a fake judge that is a plain callable), and the command end to end
against a real `mavis serve` on a tiny model that the tests start themselves."""

from __future__ import annotations

import json
import math
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serving_support import build_serving_models

from mavis.cli import main
from mavis.decoding.decoder import GeneratedSequence, MavisDecoder
from mavis.errors import MavisError
from mavis.evaluation import judge as lib
from mavis.evaluation.policy import write_answers
from mavis.objectives import OBJECTIVES
from mavis.prompts.base import Prompt
from mavis.serving.app import create_app
from mavis.serving.launch import BackgroundServer
from mavis.serving.spec import ServerLimits, ServerSpec

pytestmark = pytest.mark.usefixtures("one_thread")

NAME = "tiny"
PROMPTS = [Prompt("p-1", "how are you?", "test"), Prompt("p-2", "tell me a joke", "test"),
           Prompt("p-3", "what is up", "test")]


def answer(prompt: str, text: str) -> GeneratedSequence:
    return GeneratedSequence(prompt=prompt, text=text, token_ids=[1], logprobs=[-1.0],
                             ref_logprobs=[-1.2], finish_reason="eos")


def answers_file(path: Path, texts: list[str], prompts=PROMPTS, num_samples: int = 1) -> Path:
    """An answer file as `mavis evaluate --answers` writes it (its own writer)."""
    outputs = [answer(prompts[i // num_samples].text, text) for i, text in enumerate(texts)]
    write_answers(path, prompts, outputs, {"harmless": [0.5] * len(texts)}, num_samples)
    return path


def generate_file(path: Path, pairs: list[tuple[str, str]]) -> Path:
    """An answer file as `mavis generate --json` prints it (no prompt ids)."""
    path.write_text("".join(json.dumps(answer(p, t).to_dict()) + "\n" for p, t in pairs))
    return path


# -- verdicts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("reply, verdict", [
    ("Verdict: A", "A"),
    ("Answer B is kinder.\n\nVerdict: B", "B"),
    ("verdict: TIE.", "tie"),
    ("**Verdict:** b", "B"),
    ("Verdict: [[A]]", "A"),
    ("Final verdict: Answer B", "B"),
    ("- Verdict - \"A\"", "A"),
    ("Verdict: A\nOn reflection...\nVerdict: B", "B"),  # the last verdict line counts
    ("Verdict: A (answer A is clearer)", "A"),
    ("Verdict: B, a clearer answer", "B"),  # the article "a" is no verdict
    ("Verdict: tie (A and B are equally kind)", "tie"),
    ("<think>Verdict: A</think>\nVerdict: B", "B"),
    ("<think>maybe A</think>", "invalid"),
    ("Verdict: A or B", "invalid"),
    ("Verdict: A, not a tie", "invalid"),
    ("Verdict: C", "invalid"),
    ("Verdict: about the same", "invalid"),
    ("The verdict: neither", "invalid"),
    ("A is better", "invalid"),
    ("", "invalid"),
    ("qw ekkz ,!? aa", "invalid"),
])
def test_parse_verdict(reply, verdict):
    assert lib.parse_verdict(reply) == verdict


def test_verdicts_by_position_become_verdicts_by_file():
    assert [lib.winner(v, "AB") for v in ("A", "B", "tie", "invalid")] == \
        ["A", "B", "tie", "invalid"]
    assert [lib.winner(v, "BA") for v in ("A", "B", "tie", "invalid")] == \
        ["B", "A", "tie", "invalid"]


@pytest.mark.parametrize("ab, ba, outcome", [
    ("A", "A", "win"), ("B", "B", "loss"), ("tie", "tie", "tie"),
    ("A", "B", "inconsistent"), ("B", "A", "inconsistent"),
    ("A", "tie", "tie"), ("tie", "B", "tie"),
    ("invalid", "A", "invalid"), ("tie", "invalid", "invalid"), ("invalid", "invalid", "invalid"),
])
def test_combining_the_two_orders(ab, ba, outcome):
    assert lib.combine(ab, ba) == outcome


# -- the win rate -------------------------------------------------------------------------
def test_win_rate_counts_ties_and_inconsistent_pairs_half_and_leaves_out_invalid_ones():
    outcomes = ["win", "win", "loss", "tie", "inconsistent", "invalid"]
    rate = lib.win_rate(outcomes)
    assert (rate.pairs, rate.wins, rate.losses, rate.ties, rate.inconsistent, rate.invalid) == \
        (6, 2, 1, 1, 1, 1)
    scores = [1, 1, 0, 0.5, 0.5]
    mean = sum(scores) / 5
    se = math.sqrt(sum((s - mean) ** 2 for s in scores) / 4 / 5)
    assert rate.win_rate == pytest.approx(0.6) == pytest.approx(mean)
    assert rate.se == pytest.approx(se)
    assert (rate.low, rate.high) == pytest.approx((mean - 1.959964 * se, mean + 1.959964 * se))


def test_win_rate_edges():
    assert lib.win_rate(["win"] * 4) == lib.WinRate(4, 4, 0, 0, 0, 0, 1.0, 0.0, 1.0, 1.0)
    one = lib.win_rate(["loss"])
    assert (one.win_rate, one.se, one.low, one.high) == (0.0, 0.0, 0.0, 0.0)
    nothing = lib.win_rate(["invalid", "invalid"])
    assert nothing.win_rate is None and nothing.se is None and nothing.invalid == 2
    assert lib.win_rate([]).win_rate is None
    clipped = lib.win_rate(["win", "win", "win", "tie"])
    assert clipped.high == 1.0 and clipped.low < clipped.win_rate < 1.0
    with pytest.raises(ValueError, match="unknown outcomes"):
        lib.win_rate(["win", "draw"])


# -- answer files ---------------------------------------------------------------------------
def test_pairing_by_prompt_id_and_sample_whatever_the_order(tmp_path):
    prompts = PROMPTS[:2]
    a = answers_file(tmp_path / "a.jsonl", ["a1", "a2", "a3", "a4"], prompts, num_samples=2)
    b = answers_file(tmp_path / "b.jsonl", ["b1", "b2", "b3", "b4"], prompts, num_samples=2)
    b.write_text("".join(reversed(b.read_text().splitlines(keepends=True))))
    pairs = lib.pair_answers(lib.read_answers(a), lib.read_answers(b))
    assert [(p.key, p.prompt, p.a, p.b) for p in pairs] == [
        ("p-1/0", "how are you?", "a1", "b1"), ("p-1/1", "how are you?", "a2", "b2"),
        ("p-2/0", "tell me a joke", "a3", "b3"), ("p-2/1", "tell me a joke", "a4", "b4")]


def test_pairing_by_prompt_text_and_order_without_ids(tmp_path):
    a = generate_file(tmp_path / "a.jsonl", [("hi", "a1"), ("yo", "a2"), ("hi", "a3")])
    b = answers_file(tmp_path / "b.jsonl", ["b1", "b2"], [Prompt("x", "yo", "t"),
                                                          Prompt("y", "hi", "t")])
    b.write_text(b.read_text() + json.dumps({"prompt": "hi", "text": "b3"}) + "\n")
    pairs = lib.pair_answers(lib.read_answers(a), lib.read_answers(b))
    assert [(p.prompt, p.a, p.b) for p in pairs] == [("hi", "a1", "b2"), ("yo", "a2", "b1"),
                                                     ("hi", "a3", "b3")]
    assert pairs[0].key.endswith("/0") and pairs[2].key.endswith("/1")
    assert pairs[0].key.split("/")[0] == pairs[2].key.split("/")[0] != pairs[1].key.split("/")[0]


def test_files_whose_prompts_differ_are_refused_naming_the_file(tmp_path):
    a = answers_file(tmp_path / "a.jsonl", ["a1", "a2", "a3"])
    short = answers_file(tmp_path / "short.jsonl", ["b1", "b2"], PROMPTS[:2])
    with pytest.raises(MavisError, match=r"short.jsonl has no answer for prompt id 'p-3' "
                                         r"sample 0 \(1 of the 3"):
        lib.pair_answers(lib.read_answers(a), lib.read_answers(short), "a.jsonl",
                         "short.jsonl")
    with pytest.raises(MavisError, match=r"short.jsonl has no answer for prompt id 'p-3' "
                                         r"sample 0 \(1 of the 3 answers of a.jsonl"):
        lib.pair_answers(lib.read_answers(short), lib.read_answers(a), "short.jsonl",
                         "a.jsonl")  # the file lacking answers is named, A or B
    other = [Prompt("p-1", "how are you?", "t"), Prompt("p-2", "other words", "t"),
             Prompt("p-3", "what is up", "t")]
    renamed = answers_file(tmp_path / "renamed.jsonl", ["b1", "b2", "b3"], other)
    with pytest.raises(MavisError, match="prompt id 'p-2' sample 0 reads 'tell me a joke' in A "
                                         "but 'other words' in B"):
        lib.pair_answers(lib.read_answers(a), lib.read_answers(renamed))
    texts = generate_file(tmp_path / "t.jsonl", [("how are you?", "x"), ("nope", "y")])
    with pytest.raises(MavisError, match="B has no answer for prompt 'tell me a joke'"):
        lib.pair_answers(lib.read_answers(a), lib.read_answers(texts))
    twice = tmp_path / "twice.jsonl"
    twice.write_text(a.read_text() + a.read_text().splitlines(keepends=True)[0])
    with pytest.raises(MavisError, match="B has two answers for prompt id 'p-1' sample 0"):
        lib.pair_answers(lib.read_answers(a), lib.read_answers(twice))


@pytest.mark.parametrize("content, words", [
    (None, "does not exist"),
    ("", "holds no answers"),
    ('{"prompt": "hi", "text": "yo"}\nnot json\n', "line 2 is not JSON"),
    ('{"prompt": "hi"}\n', "line 1 has no 'text'"),
    ('["prompt", "text"]\n', "line 1 has no 'prompt'"),
])
def test_unreadable_answer_files_are_refused(tmp_path, content, words):
    path = tmp_path / "answers.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(MavisError, match=words):
        lib.read_answers(path)


# -- the judge's prompt and a fake judge -------------------------------------------------------
def test_objective_descriptions_and_the_judge_prompt():
    assert lib.objective_description("harmless") == OBJECTIVES.describe("harmless") != ""
    assert lib.objective_description("harmless", " kind  and\nsafe ") == "kind and safe"
    assert lib.objective_description("helpful") == ""
    [message] = lib.judge_messages("helpful", "answers fully", "how are you?", "fine", "bad")
    text = message["content"]
    assert message["role"] == "user"
    assert "Objective: helpful (answers fully)" in text
    assert text.index("how are you?") < text.index("[Answer A]\nfine") < \
        text.index("[Answer B]\nbad")
    assert text.endswith("Verdict: A\nVerdict: B\nVerdict: tie")
    assert "Objective: helpful\n" in lib.judge_messages("helpful", "", "p", "x", "y")[0]["content"]


def kindness_judge(messages):
    """Prefers the answer with 'kind' in it, whichever position it is in; else a tie."""
    text = messages[0]["content"]
    first = text.split("[Answer A]\n")[1].split("\n\n[Answer B]")[0]
    second = text.split("[Answer B]\n")[1].split("\n\nWhich answer")[0]
    if ("kind" in first) == ("kind" in second):
        return "They are alike.\nVerdict: tie"
    return "Verdict: A" if "kind" in first else "Because...\n**Verdict:** B"


def judged(pairs, judge, tmp_path, workers=1):
    log = lib.JudgementLog(tmp_path / "judgements.jsonl")
    tasks = lib.plan_judgements(pairs, "kind", "", {"model": "fake"}, log)
    lib.ask_judge(tasks, judge, log, workers=workers)
    return lib.outcomes(pairs, log), log


def test_orders_combined_with_a_fake_judge(tmp_path):
    pairs = [lib.AnswerPair("1", "p", "a kind answer", "a rude one"),
             lib.AnswerPair("2", "p", "rude", "kind"),
             lib.AnswerPair("3", "p", "plain", "plain too")]
    outcomes, log = judged(pairs, kindness_judge, tmp_path, workers=2)
    assert outcomes == ["win", "loss", "tie"]
    assert {(r["pair"], r["order"]): (r["verdict"], r["winner"])
            for r in log.records.values()} == {
        ("1", "AB"): ("A", "A"), ("1", "BA"): ("B", "A"), ("2", "AB"): ("B", "B"),
        ("2", "BA"): ("A", "B"), ("3", "AB"): ("tie", "tie"), ("3", "BA"): ("tie", "tie")}
    biased, _ = judged(pairs, lambda messages: "Verdict: A", tmp_path / "biased")
    assert biased == ["inconsistent"] * 3  # always the first shown: a position disagreement
    summary = lib.judge_summary(pairs, lib.JudgementLog(tmp_path / "biased/judgements.jsonl"))
    assert (summary["inconsistent"], summary["win_rate"], summary["invalid_judgements"]) == \
        (3, 0.5, 0)
    noise, _ = judged(pairs, lambda messages: "qwerty", tmp_path / "noise")
    assert noise == ["invalid"] * 3


def test_judging_resumes_and_refuses_another_judges_judgements(tmp_path):
    pairs = [lib.AnswerPair(str(i), "p", f"kind {i}", "rude") for i in range(3)]
    asked = []

    def counting(messages):
        asked.append(messages)
        return kindness_judge(messages)

    judged(pairs, counting, tmp_path)
    assert len(asked) == 6
    path = tmp_path / "judgements.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + lines[3][:20])  # killed while writing line 4
    outcomes, log = judged(pairs, counting, tmp_path)
    assert len(asked) == 9 and outcomes == ["win"] * 3
    assert len(path.read_text().splitlines()) == 6
    judged(pairs, counting, tmp_path)
    assert len(asked) == 9  # nothing left to ask
    with pytest.raises(MavisError, match="asked differently"):
        lib.plan_judgements(pairs, "kind", "", {"model": "another"}, log)


def test_a_failing_judge_keeps_what_was_judged(tmp_path):
    pairs = [lib.AnswerPair(str(i), "p", "kind", "rude") for i in range(3)]
    calls = []

    def flaky(messages):
        calls.append(1)
        if len(calls) == 3:
            raise MavisError("the judge went away")
        return kindness_judge(messages)

    with pytest.raises(MavisError, match="went away"):
        judged(pairs, flaky, tmp_path)
    assert len(lib.JudgementLog(tmp_path / "judgements.jsonl").records) == 2
    outcomes, _ = judged(pairs, kindness_judge, tmp_path)
    assert outcomes == ["win"] * 3


# -- against a live `mavis serve` ---------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_serving_models(tmp_path_factory.mktemp("judge-models"))


@pytest.fixture(scope="module")
def decoder(models):
    return MavisDecoder.load(str(models[0]), [str(models[1])])


def serve(models, decoder, api_key=None) -> BackgroundServer:
    limits = ServerLimits(max_batch=8, max_queue=32, max_tokens=64, default_max_tokens=8,
                          max_prompt_chars=8000)
    spec = ServerSpec(model=str(models[0]), value_model_folders=(str(models[1]),),
                      limits=limits, served_name=NAME, api_key=api_key)
    return BackgroundServer(create_app(decoder, spec))


@pytest.fixture(scope="module")
def server(models, decoder):
    with serve(models, decoder) as running:
        yield running


def chat_requests(server) -> float:
    """Chat completions the server answered with 200 (its /metrics)."""
    for family in text_string_to_metric_families(httpx.get(server.url + "/metrics").text):
        for sample in family.samples:
            if (sample.name == "mavis_requests_total" and sample.labels.get("status") == "200"
                    and sample.labels.get("route") == "/v1/chat/completions"):
                return sample.value
    return 0.0


def command(a, b, url, out, *extra):
    return ["judge", str(a), str(b), "--objective", "harmless", "--base-url", url, "--model",
            NAME, "--out", str(out), "--max-tokens", "4", "--no-progress", *extra]


def test_judge_command_against_a_live_server_resumes_without_asking_again(
        server, tmp_path, capsys):
    a = answers_file(tmp_path / "a.jsonl", ["i am fine, thanks!", "no.", "the sky"])
    b = answers_file(tmp_path / "b.jsonl", ["go away", "a duck walks into a bar", "not much"])
    out = tmp_path / "judged"
    args = command(a, b, server.url + "/v1", out)
    before = chat_requests(server)
    assert main(args) == 0
    assert chat_requests(server) == before + 6  # every pair in both orders, over HTTP
    records = [json.loads(line) for line in (out / "judgements.jsonl").read_text().splitlines()]
    assert sorted((r["pair"], r["order"]) for r in records) == sorted(
        (f"p-{i}/0", order) for i in (1, 2, 3) for order in ("AB", "BA"))
    # the tiny character model has no ':' and no capitals: every reply is unparseable
    assert all(isinstance(r["reply"], str) and r["verdict"] == "invalid" for r in records)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["pairs"], summary["judgements"], summary["invalid"],
            summary["invalid_judgements"], summary["win_rate"], summary["asked"]) == \
        (3, 6, 3, 6, None, 6)
    assert summary["judge"] == {"base_url": server.url + "/v1", "model": NAME,
                                "temperature": 0.0, "max_tokens": 4}
    assert summary["description"] == OBJECTIVES.describe("harmless")
    shown = capsys.readouterr().out
    assert "n/a (no valid pair)" in shown and "unparseable replies  6 of 6" in shown

    assert main(args) == 0  # everything judged: no request at all
    assert chat_requests(server) == before + 6
    lines = (out / "judgements.jsonl").read_text().splitlines(keepends=True)
    (out / "judgements.jsonl").write_text("".join(lines[:4]) + lines[4][:15])  # killed
    assert main(args) == 0
    assert chat_requests(server) == before + 8  # only the two judgements missing
    assert len((out / "judgements.jsonl").read_text().splitlines()) == 6
    assert json.loads((out / "summary.json").read_text())["asked"] == 2
    assert main(args[:-1] + ["--limit", "1", "--no-progress"]) == 0
    assert chat_requests(server) == before + 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class NotOpenAI(BaseHTTPRequestHandler):
    def _answer(self):
        body = b'{"hello": "world"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def not_openai():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NotOpenAI)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_bad_input_is_one_error_line_before_any_judging(server, not_openai, tmp_path, capsys,
                                                        monkeypatch):
    a = answers_file(tmp_path / "a.jsonl", ["x", "y", "z"])
    b = answers_file(tmp_path / "b.jsonl", ["u", "v"], PROMPTS[:2])
    c = answers_file(tmp_path / "c.jsonl", ["u", "v", "w"])
    url, out = server.url + "/v1", tmp_path / "out"
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    cases = [
        (command(tmp_path / "missing.jsonl", a, url, out), "missing.jsonl' does not exist"),
        (command(a, b, url, out), "b.jsonl has no answer for prompt id 'p-3'"),
        (command(a, c, f"http://127.0.0.1:{free_port()}/v1", out), "cannot reach the judge"),
        (command(a, c, url, out, "--model", "gpt-4"), "serves tiny, not 'gpt-4'"),
        (command(a, c, not_openai, out), "did not answer as OpenAI's API does"),
        (command(a, c, server.url, out), "--base-url should be the API root"),
        (command(a, c, url, out, "--api-key-env", "NO_SUCH_KEY_VAR"), "is not set"),
        (command(a, c, url, out, "--limit", "0"), "--limit is 0"),
        (command(a, c, url, out, "--describe", "  "), "--describe is empty"),
        (command(a, c, url, tmp_path / "a.jsonl"), "is a file; give a folder"),
        (command(a, c, "localhost:8000", out), "is not an http(s) URL"),
    ]
    before = chat_requests(server)
    for args, words in cases:
        assert main(args) == 2, words
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and error[0].startswith("error: ") and words in error[0], error
    assert not out.exists() and chat_requests(server) == before


def test_the_api_key_is_sent_as_a_bearer_token(models, decoder, tmp_path, capsys, monkeypatch):
    a = answers_file(tmp_path / "a.jsonl", ["x"], PROMPTS[:1])
    b = answers_file(tmp_path / "b.jsonl", ["y"], PROMPTS[:1])
    with serve(models, decoder, api_key="sesame") as keyed:
        url = keyed.url + "/v1"
        assert main(command(a, b, url, tmp_path / "out")) == 2
        assert "--api-key-env" in capsys.readouterr().err
        monkeypatch.setenv("JUDGE_KEY", "sesame")
        assert main(command(a, b, url, tmp_path / "out", "--api-key-env", "JUDGE_KEY")) == 0
    assert json.loads((tmp_path / "out/summary.json").read_text())["judgements"] == 2


class Flaky(BaseHTTPRequestHandler):
    """A chat endpoint that answers 503 while it has seen fewer than three requests of model
    'flaky', 400 to model 'bad', and null content to model 'silent'."""

    seen: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Flaky.seen.append(body)
        if body["model"] == "bad":
            self._send(400, {"error": {"message": "max_tokens is too large"}})
        elif body["model"] == "flaky" and len(Flaky.seen) < 3:
            self._send(503, {"error": {"message": "busy"}})
        else:
            content = None if body["model"] == "silent" else "fine\nVerdict: B"
            self._send(200, {"choices": [{"message": {"role": "assistant",
                                                      "content": content}}]})

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_the_chat_client_retries_busy_servers_and_reads_openai_answers():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    messages = [{"role": "user", "content": "which?"}]
    try:
        endpoint = lib.ChatEndpoint(url, "flaky", backoff=0.01, max_tokens=7)
        with lib.ChatJudge(endpoint) as chat:
            assert chat(messages) == "fine\nVerdict: B"
        assert len(Flaky.seen) == 3  # two 503s, then the answer
        assert Flaky.seen[-1] == {"model": "flaky", "temperature": 0.0, "max_tokens": 7,
                                  "messages": messages}
        with lib.ChatJudge(lib.ChatEndpoint(url, "silent")) as chat:
            assert chat(messages) == ""  # an OpenAI answer without text: an invalid verdict
        Flaky.seen.clear()
        with lib.ChatJudge(lib.ChatEndpoint(url, "bad", backoff=0.01)) as chat, \
                pytest.raises(MavisError, match=r"refused the request \(400: max_tokens is too "):
            chat(messages)
        assert len(Flaky.seen) == 1  # a refusal is not retried
        Flaky.seen.clear()
        with lib.ChatJudge(lib.ChatEndpoint(url, "flaky", retries=1, backoff=0.01)) as chat, \
                pytest.raises(MavisError, match=r"failed 2 times: .* answered 503 \(busy\)"):
            chat(messages)
    finally:
        httpd.shutdown()
        httpd.server_close()
