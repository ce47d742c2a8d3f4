"""Pairwise win rates from a judge model (`mavis judge`): the papers' LLM-as-a-judge comparison.

Two answer files with the same prompts (`mavis evaluate --answers`, `mavis generate --json`)
are paired (`read_answers`, `pair_answers`). A judge model behind any OpenAI-compatible chat
endpoint (`ChatJudge`; in tests any callable `messages -> reply`) is asked, for each pair and in
both orders, which answer is better for one objective (`judge_messages`), and ends its reply
with a line `Verdict: A`, `Verdict: B` or `Verdict: tie` (`parse_verdict`; anything else is
"invalid"). The two orders of a pair combine into one outcome for file A (`combine`):

    both orders pick A's answer (B's)              -> win (loss)
    both orders say tie                            -> tie
    one order picks an answer, the other says tie  -> tie (the preference did not hold)
    the orders pick different answers              -> inconsistent (a position disagreement)
    either reply unparseable                       -> invalid (left out of the win rate)

The win rate of A over B (`win_rate`) scores a win 1, a loss 0, a tie and an inconsistent pair
1/2 (the judge could not tell the answers apart, as MT-Bench counts them) and averages over the
valid pairs; its standard error is that of this mean, its 95% interval the normal one (rate
± 1.96 SE, clipped to [0, 1]).

Judgements are appended to a JSON Lines file as they come (`JudgementLog`, one line per pair
and order, keyed by a digest of the exact request), so a stopped run resumes without asking
again (`plan_judgements`, `ask_judge`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from mavis.errors import MavisError
from mavis.objectives import OBJECTIVES
from mavis.progress import track

VERDICTS = ("A", "B", "tie")
INVALID = "invalid"
ORDERS = ("AB", "BA")  # AB: file A's answer is shown first, as "Answer A"; BA: file B's is
OUTCOMES = ("win", "loss", "tie", "inconsistent", INVALID)  # of file A against file B
SCORE = {"win": 1.0, "loss": 0.0, "tie": 0.5, "inconsistent": 0.5}
Z95 = 1.959963984540054
RULE = ("a win counts 1, a tie and an inconsistent pair (the two orders picked different "
        "answers) 1/2, a loss 0; invalid pairs (an unparseable reply) are left out")
FORMATS = "`mavis evaluate --answers FILE` or `mavis generate ... --json > FILE`"

Messages = list[dict[str, str]]
Judge = Callable[[Messages], str]  # the chat messages -> the judge's reply


# -- answer files -------------------------------------------------------------------------
@dataclass(frozen=True)
class AnswerPair:
    """One prompt's answers from the two files, under a key stable across runs."""

    key: str
    prompt: str
    a: str
    b: str


def read_answers(path: str | Path) -> list[dict[str, Any]]:
    """The answers of a JSON Lines file, one object per line with at least the strings
    `prompt` and `text` (as `mavis evaluate --answers` and `mavis generate --json` write them);
    a MavisError naming the file and line otherwise."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise MavisError(f"answer file {str(path)!r} {what}; write one with {FORMATS}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise MavisError(f"answer file {str(path)!r} is not UTF-8 text; write one with "
                         f"{FORMATS}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MavisError(f"{path} line {number} is not JSON ({exc.msg}); an answer file "
                             f"holds one JSON object per line, as {FORMATS} write it") from None
        for key in ("prompt", "text"):
            if not isinstance(row, dict) or not isinstance(row.get(key), str):
                raise MavisError(f"{path} line {number} has no {key!r} (a string); an answer "
                                 f"file holds one object per line with 'prompt' and 'text', as "
                                 f"{FORMATS} write it")
        rows.append(row)
    if not rows:
        raise MavisError(f"answer file {str(path)!r} holds no answers; write one with {FORMATS}")
    return rows


def pair_answers(a_rows: Sequence[Mapping[str, Any]], b_rows: Sequence[Mapping[str, Any]],
                 a_name: str = "A", b_name: str = "B") -> list[AnswerPair]:
    """The answers of two files paired, in file A's order: by (prompt_id, sample) when every
    answer of both files has a prompt id, else by (prompt text, order of appearance). Files
    whose prompts do not match are refused, naming the file and the first answer missing."""
    by_id = all(row.get("prompt_id") is not None for row in [*a_rows, *b_rows])
    a_keyed = _keyed(a_rows, a_name, by_id)
    b_keyed = _keyed(b_rows, b_name, by_id)
    for have, lack, name_have, name_lack in ((a_keyed, b_keyed, a_name, b_name),
                                             (b_keyed, a_keyed, b_name, a_name)):
        missing = [key for key in have if key not in lack]
        if missing:
            raise MavisError(
                f"{name_lack} has no answer for {_describe_key(missing[0], by_id)} "
                f"({len(missing)} of the {len(have)} answers of {name_have} unmatched); judge "
                "two files answered on the same prompts (the same --prompts, --split, --limit "
                "and --num-samples)")
    pairs = []
    for key, row in a_keyed.items():
        other = b_keyed[key]
        if row["prompt"] != other["prompt"]:
            raise MavisError(f"{_describe_key(key, by_id)} reads {_clip(row['prompt'])!r} in "
                             f"{a_name} but {_clip(other['prompt'])!r} in {b_name}; judge two "
                             "files answered on the same prompts")
        name = f"{key[0]}/{key[1]}" if by_id else f"text-{_digest(key[0])}/{key[1]}"
        pairs.append(AnswerPair(name, row["prompt"], row["text"], other["text"]))
    return pairs


def _keyed(rows: Sequence[Mapping[str, Any]], name: str, by_id: bool
           ) -> dict[tuple[str, int], Mapping[str, Any]]:
    """Each answer under its pairing key: (prompt id, sample) or (prompt text, occurrence)."""
    keyed: dict[tuple[str, int], Mapping[str, Any]] = {}
    seen: Counter[str] = Counter()
    for row in rows:
        first = str(row["prompt_id"]) if by_id else row["prompt"]
        sample = row.get("sample") if by_id else None
        key = (first, sample if isinstance(sample, int) else seen[first])
        seen[first] += 1
        if key in keyed:
            raise MavisError(f"{name} has two answers for {_describe_key(key, by_id)}; give a "
                             "file with one answer per prompt and sample")
        keyed[key] = row
    return keyed


def _describe_key(key: tuple[str, int], by_id: bool) -> str:
    if by_id:
        return f"prompt id {key[0]!r} sample {key[1]}"
    return f"prompt {_clip(key[0])!r}" + (f" (its answer {key[1] + 1})" if key[1] else "")


def _clip(text: str, size: int = 40) -> str:
    return text if len(text) <= size else text[:size - 3] + "..."


def _digest(text: str, size: int = 12) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:size]


# -- the judge's prompt and verdict ------------------------------------------------------------
def objective_description(name: str, describe: str | None = None) -> str:
    """What the judge is told the objective means: `describe` when given, else a built-in
    objective's description (`mavis objectives list`), else "" (the name alone)."""
    if describe is not None:
        return " ".join(describe.split())
    return OBJECTIVES.describe(name) if name in OBJECTIVES else ""


def judge_messages(objective: str, description: str, prompt: str, first: str,
                   second: str) -> Messages:
    """The chat messages asking which of two answers (`first` shown as A) is better for the
    objective: one user turn, since some chat templates take no system turn."""
    about = f"{objective} ({description})" if description else objective
    text = (
        "You are comparing two answers to the same user prompt for one objective.\n\n"
        f"Objective: {about}\n\n"
        f"[User prompt]\n{prompt}\n\n"
        f"[Answer A]\n{first}\n\n"
        f"[Answer B]\n{second}\n\n"
        "Which answer is better for this objective? Judge only the objective; the order in "
        "which the answers appear and their length must not sway you. Explain briefly, then "
        "end your reply with one line that is exactly one of:\n"
        "Verdict: A\nVerdict: B\nVerdict: tie")
    return [{"role": "user", "content": text}]


_VERDICT_LINE = re.compile(
    r"^[\W_]*(?:final\s+)?verdict\b[\s*_:`'\"\[\]()=\-]*(?:answer\s+)?(a|b|tie)\b(.*)$",
    re.IGNORECASE | re.MULTILINE)
_OTHER_VERDICT = re.compile(r"\b(A|B|[Tt][Ii][Ee])\b")
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL)


def parse_verdict(reply: str) -> str:
    """"A", "B" or "tie" from the judge's last `Verdict: ...` line, else "invalid".

    Case and decoration are forgiven (`**Verdict:** b`, `Verdict: [[A]]`, `verdict: Tie.`,
    `Verdict: Answer B`); a reasoning block `<think>...</think>` is skipped; a line picking an
    answer that goes on to name another verdict (`Verdict: A or B`, `Verdict: A, a tie`) is
    invalid (capital A and B count there, the article "a" does not)."""
    matches = list(_VERDICT_LINE.finditer(_THINKING.sub("", reply or "")))
    if not matches:
        return INVALID
    token, rest = matches[-1].group(1), matches[-1].group(2)
    if token.lower() == "tie":  # "Verdict: tie (A and B are equally ...)" names both
        return "tie"
    others = {"tie" if t.lower() == "tie" else t for t in _OTHER_VERDICT.findall(rest)}
    return token.upper() if others <= {token.upper()} else INVALID


def winner(verdict: str, order: str) -> str:
    """A verdict by position (A: the answer shown first) as one by file (A: file A's)."""
    if order == "BA" and verdict in ("A", "B"):
        return "B" if verdict == "A" else "A"
    return verdict


def combine(ab: str, ba: str) -> str:
    """One pair's outcome for file A from the winners (by file) of its two orders."""
    if INVALID in (ab, ba):
        return INVALID
    if ab == ba:
        return {"A": "win", "B": "loss", "tie": "tie"}[ab]
    return "tie" if "tie" in (ab, ba) else "inconsistent"


# -- the win rate ---------------------------------------------------------------------------
@dataclass(frozen=True)
class WinRate:
    """Win rate of A over B (None when no pair is valid), its standard error and 95% interval,
    and the count of each outcome."""

    pairs: int
    wins: int
    losses: int
    ties: int
    inconsistent: int
    invalid: int
    win_rate: float | None
    se: float | None
    low: float | None
    high: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def win_rate(outcomes: Sequence[str]) -> WinRate:
    """The win rate of A over B from the pairs' outcomes (`combine`): wins 1, ties and
    inconsistent pairs 1/2, losses 0, invalid pairs left out; the standard error of that mean
    (0 for one pair) and rate ± 1.96 SE clipped to [0, 1]."""
    counts = Counter(outcomes)
    unknown = set(counts) - set(OUTCOMES)
    if unknown:
        raise ValueError(f"unknown outcomes {sorted(unknown)}; known: {OUTCOMES}")
    scores = [SCORE[o] for o in outcomes if o != INVALID]
    rate = se = low = high = None
    if scores:
        n = len(scores)
        rate = sum(scores) / n
        variance = sum((s - rate) ** 2 for s in scores) / (n - 1) if n > 1 else 0.0
        se = math.sqrt(variance / n)
        low, high = max(0.0, rate - Z95 * se), min(1.0, rate + Z95 * se)
    return WinRate(pairs=len(outcomes), wins=counts["win"], losses=counts["loss"],
                   ties=counts["tie"], inconsistent=counts["inconsistent"],
                   invalid=counts[INVALID], win_rate=rate, se=se, low=low, high=high)


# -- judging, resumable ---------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One question for the judge: a pair in one order, and the digest of its request."""

    pair: str
    order: str
    messages: Messages
    request: str


_LOGGED = ("pair", "order", "request", "verdict")  # what a judgement line must hold


class JudgementLog:
    """The judgements so far: a JSON Lines file, one line per pair and order, appended (and
    synced) as each reply comes. A line cut short by a crash is dropped when the file is read
    again. Nothing is created until the first judgement is appended."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # the last line was cut short: drop it
            data = data[:data.rfind(b"\n") + 1]
            os.truncate(self.path, len(data))
        for number, line in enumerate(data.splitlines(), 1):
            try:
                record = json.loads(line)
                if (not all(isinstance(record[key], str) for key in _LOGGED)
                        or record["order"] not in ORDERS
                        or record["verdict"] not in (*VERDICTS, INVALID)):
                    raise TypeError
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
                raise MavisError(f"{self.path} line {number} is not a judgement; give another "
                                 "--out or remove the file") from None
            self.records[(record["pair"], record["order"])] = record

    def find(self, task: Task) -> dict[str, Any] | None:
        """The judgement of `task` made before, None if there is none; a judgement of the same
        pair and order asked differently (another judge, objective or answer) is refused."""
        record = self.records.get((task.pair, task.order))
        if record is not None and record.get("request") != task.request:
            raise MavisError(
                f"{self.path} holds a judgement of pair {task.pair!r} (order {task.order}) "
                "asked differently (another judge model, objective, answers or settings); give "
                "another --out, or remove the file to judge again")
        return record

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
            file.flush()
            os.fsync(file.fileno())
        self.records[(record["pair"], record["order"])] = record


def request_digest(setup: Mapping[str, Any], messages: Messages) -> str:
    """A digest of what the judge is asked: its setup (model, temperature, ...) and messages."""
    return _digest(json.dumps({"setup": dict(setup), "messages": messages}, sort_keys=True), 16)


def plan_judgements(pairs: Sequence[AnswerPair], objective: str, description: str,
                    setup: Mapping[str, Any], log: JudgementLog) -> list[Task]:
    """Every pair in both orders as a `Task`, less those `log` holds already."""
    tasks = []
    for pair in pairs:
        for order in ORDERS:
            first, second = (pair.a, pair.b) if order == "AB" else (pair.b, pair.a)
            messages = judge_messages(objective, description, pair.prompt, first, second)
            task = Task(pair.key, order, messages, request_digest(setup, messages))
            if log.find(task) is None:
                tasks.append(task)
    return tasks


def ask_judge(tasks: Sequence[Task], judge: Judge, log: JudgementLog, *, workers: int = 1,
              progress: bool = False) -> None:
    """Ask `judge` every task (`workers` at a time) and append each judgement to `log` as it
    comes; on a failure the tasks not yet asked are cancelled and the error raised (what was
    judged stays in the log)."""
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="mavis-judge")
    try:
        futures = {pool.submit(_timed, judge, task.messages): task for task in tasks}
        for future in track(as_completed(futures), "judging", total=len(futures),
                            unit="judgement", disable=not progress):
            task = futures[future]
            reply, seconds = future.result()
            verdict = parse_verdict(reply)
            log.append({"pair": task.pair, "order": task.order, "request": task.request,
                        "verdict": verdict, "winner": winner(verdict, task.order),
                        "reply": reply, "seconds": round(seconds, 3)})
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _timed(judge: Judge, messages: Messages) -> tuple[str, float]:
    started = time.perf_counter()
    reply = judge(messages)
    return reply, time.perf_counter() - started


def outcomes(pairs: Sequence[AnswerPair], log: JudgementLog) -> list[str]:
    """Each pair's outcome (`combine`) from the judgements in `log`."""
    return [combine(*(winner(log.records[(p.key, order)]["verdict"], order) for order in ORDERS))
            for p in pairs]


def judge_summary(pairs: Sequence[AnswerPair], log: JudgementLog, **context: Any
                  ) -> dict[str, Any]:
    """The summary of a finished judging (what `mavis judge` writes to summary.json): the win
    rate and counts (`WinRate`), the unparseable replies, the rule, and `context`."""
    rate = win_rate(outcomes(pairs, log))
    replies = [log.records[(p.key, order)] for p in pairs for order in ORDERS]
    return {**context, **rate.to_dict(), "judgements": len(replies),
            "invalid_judgements": sum(r["verdict"] == INVALID for r in replies), "rule": RULE}


# -- an OpenAI-compatible chat endpoint -----------------------------------------------------
RETRIED_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class ChatEndpoint:
    """Where the judge runs and how it is asked: `{base_url}/chat/completions` of any
    OpenAI-compatible server (vLLM, `mavis serve`, OpenAI's API), `model` by its served name."""

    base_url: str  # the API root, e.g. http://127.0.0.1:8000/v1
    model: str
    api_key: str | None = None  # sent as a bearer token when given
    temperature: float = 0.0
    max_tokens: int = 512  # of the judge's reply: its reasoning and the verdict line
    timeout: float = 120.0  # seconds per request
    retries: int = 3  # more tries after a failed connection, a timeout, a 429 or a 5xx
    backoff: float = 1.0  # seconds before the first retry, doubled after each

    def __post_init__(self) -> None:
        try:
            url = httpx.URL(self.base_url)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise MavisError(f"--base-url {self.base_url!r} is not an http(s) URL; give the API "
                             "root of the judge's server, e.g. http://127.0.0.1:8000/v1")
        if not self.model.strip():
            raise MavisError("--model is empty; give the judge model's served name (GET "
                             "{base_url}/models lists them)")

    @property
    def setup(self) -> dict[str, Any]:
        """What decides a judgement besides the messages (part of each request's digest)."""
        return {"model": self.model, "temperature": self.temperature,
                "max_tokens": self.max_tokens}


class ChatJudge:
    """A `Judge` asking a `ChatEndpoint` (thread-safe: one HTTP client, many calls)."""

    def __init__(self, endpoint: ChatEndpoint) -> None:
        self.endpoint = endpoint
        self.root = endpoint.base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        self.client = httpx.Client(timeout=endpoint.timeout, headers=headers)

    def __enter__(self) -> ChatJudge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def check(self) -> None:
        """Before judging: the endpoint answers `GET {base_url}/models` as OpenAI's API does
        and serves the model (a server without that route is left to the first request)."""
        url = self.root + "/models"
        try:
            response = self.client.get(url)
        except httpx.HTTPError as exc:
            raise MavisError(f"cannot reach the judge at {self.root} ({_reason(exc)}); start "
                             "the server (`vllm serve MODEL`, `mavis serve`) or fix "
                             "--base-url") from None
        if response.status_code in (404, 405):
            return
        if response.status_code >= 400:
            raise _refused(url, response)
        try:
            served = [entry["id"] for entry in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise MavisError(f"{url} did not answer as OpenAI's API does (no list of models); "
                             "give --base-url of an OpenAI-compatible server, e.g. "
                             "http://127.0.0.1:8000/v1") from None
        if self.endpoint.model not in served:
            raise MavisError(f"the judge at {self.root} serves {', '.join(served) or 'nothing'}"
                             f", not {self.endpoint.model!r}; give --model one of them")

    def __call__(self, messages: Messages) -> str:
        """The judge's reply to `messages`, retried with backoff on a failed connection, a
        timeout, a 429 or a 5xx; any other refusal is a MavisError at once."""
        url = self.root + "/chat/completions"
        body = {**self.endpoint.setup, "messages": messages}
        problem = ""
        for attempt in range(self.endpoint.retries + 1):
            if attempt:
                time.sleep(self.endpoint.backoff * 2 ** (attempt - 1))
            try:
                response = self.client.post(url, json=body)
            except httpx.HTTPError as exc:
                problem = f"cannot reach {url} ({_reason(exc)})"
                continue
            if response.status_code in RETRIED_STATUS:
                problem = f"{url} answered {response.status_code} ({_server_says(response)})"
                continue
            if response.status_code >= 400:
                raise _refused(url, response)
            return _content(url, response)
        raise MavisError(f"the judge failed {self.endpoint.retries + 1} times: {problem}; "
                         "check the server at --base-url, then run the command again (the "
                         "judgements made are kept)")


def _content(url: str, response: httpx.Response) -> str:
    """choices[0].message.content of a chat completion ("" when null)."""
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        content = 0  # not OpenAI's shape
    if content is None:
        return ""
    if not isinstance(content, str):
        raise MavisError(f"{url} did not answer as OpenAI's chat API does (no "
                         "choices[0].message.content); give --base-url of an OpenAI-compatible "
                         "server, e.g. http://127.0.0.1:8000/v1")
    return content


def _refused(url: str, response: httpx.Response) -> MavisError:
    status, says = response.status_code, _server_says(response)
    if status in (401, 403):
        fix = "give its API key with --api-key-env VAR (the variable holding the key)"
    elif status == 404:
        fix = ("--base-url should be the API root (e.g. http://127.0.0.1:8000/v1) and --model "
               "a model it serves")
    else:
        fix = "check --model, --max-tokens and --temperature against what the server takes"
    return MavisError(f"the judge at {url} refused the request ({status}: {says}); {fix}")


def _server_says(response: httpx.Response) -> str:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text
    return _clip(" ".join(str(message).split()), 160) or response.reason_phrase


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

