"""Serving throughput: the same requests sent one after the other, then by 4 and by 16
concurrent clients, each request with its own objective weights and seed.

    python benchmarks/serving.py                          # packaged defaults, 16 requests
    python benchmarks/serving.py --requests 32 --max-tokens 64 --concurrency 1,4,16
    python benchmarks/serving.py --url http://127.0.0.1:8000   # a server already running

Without --url it starts `mavis serve` with the packaged defaults (SmolLM2-135M-Instruct and the
bundled value model) in a process of its own on a free loopback port, and stops it at the end.
Clients are threads of this process, each sending its next request when its previous answer
arrives (a closed loop); concurrency 1 is the requests one after the other. Every request
carries a seed, so every run generates the same tokens and the token counts agree across rows.

Printed: a Markdown table (requests/s, generated tokens/s, p50/p95 latency, tokens/s relative
to one-after-the-other), then one JSON line with the same figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

PROMPTS = [
    "Tell me about your favourite book and why you like it.",
    "How can I make my neighbour stop playing loud music at night?",
    "Write a short note to cheer up a friend who failed an exam.",
    "What is the best way to learn a new language as an adult?",
    "How do I tell my boss I'm quitting?",
    "What should I cook for dinner tonight?",
    "Why do cats knock things off tables?",
    "Give me three tips for sleeping better.",
]


@dataclass
class Run:
    """One concurrency level: wall time, and per request its latency and generated tokens."""

    clients: int
    wall_s: float
    latencies: list[float]
    tokens: list[int]

    @property
    def figures(self) -> dict[str, float]:
        latencies = sorted(self.latencies)
        return {"clients": self.clients, "requests": len(latencies),
                "wall_s": self.wall_s, "requests_per_s": len(latencies) / self.wall_s,
                "tokens_per_s": sum(self.tokens) / self.wall_s,
                "p50_s": statistics.median(latencies),
                "p95_s": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]}


def requests(count: int, objectives: list[str], max_tokens: int, model: str) -> list[dict]:
    """`count` chat requests, each with its own prompt, weights (a walk over the simplex of
    the loaded objectives) and seed."""
    out = []
    for i in range(count):
        raw = [1.0 + ((i * (j + 2)) % 5) for j in range(len(objectives))]
        weights = {name: round(w / sum(raw), 3) for name, w in zip(objectives, raw, strict=True)}
        out.append({"model": model, "max_tokens": max_tokens, "seed": i,
                    "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                    "objective_weights": weights})
    return out


def run(url: str, bodies: list[dict], clients: int, headers: dict[str, str]) -> Run:
    """Send every body with `clients` concurrent clients; latency and tokens per request."""
    http = httpx.Client(base_url=url, timeout=3600, headers=headers,
                        limits=httpx.Limits(max_connections=clients))

    def send(body: dict) -> tuple[float, int]:
        start = time.perf_counter()
        response = http.post("/v1/chat/completions", json=body)
        response.raise_for_status()
        return time.perf_counter() - start, response.json()["usage"]["completion_tokens"]

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:  # each worker: its next request when one returns
        results = list(pool.map(send, bodies))
    wall = time.perf_counter() - start
    http.close()
    return Run(clients, wall, [r[0] for r in results], [r[1] for r in results])


def start_server(threads: int | None, max_batch: int) -> tuple[subprocess.Popen, str]:
    """`mavis serve` with the packaged defaults on a free loopback port; (process, URL)."""
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [sys.executable, "-m", "mavis", "serve", "--port", "0",
               "--max-batch", str(max_batch)]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    seen = ""
    while not (found := re.search(r"on (http://127\.0\.0\.1:\d+)", seen)):
        line = process.stderr.readline()
        if not line:
            raise SystemExit(f"mavis serve did not start:\n{seen}")
        seen += line
    return process, found.group(1)


def table(runs: list[Run]) -> str:
    base = runs[0].figures["tokens_per_s"]
    lines = ["| clients | requests | wall s | requests/s | generated tok/s | p50 latency s "
             "| p95 latency s | tok/s vs one after the other |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        f = r.figures
        label = "1 (one after the other)" if r.clients == 1 else str(r.clients)
        lines.append(f"| {label} | {f['requests']} | {f['wall_s']:.1f} | "
                     f"{f['requests_per_s']:.3f} | {f['tokens_per_s']:.2f} | {f['p50_s']:.1f} | "
                     f"{f['p95_s']:.1f} | {f['tokens_per_s'] / base:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server (default: start mavis serve)")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)  # the server's default
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--threads", type=int, help="torch threads of the started server")
    parser.add_argument("--max-batch", type=int, default=16)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    load = os.getloadavg()[0]
    key = os.environ.get("MAVIS_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    process, url = (None, args.url) if args.url else start_server(args.threads, args.max_batch)
    try:
        http = httpx.Client(base_url=url, headers=headers, timeout=60)
        model = http.get("/v1/models").json()["data"][0]["id"]
        objectives = [o["name"] for o in http.get("/v1/objectives").json()["data"]]
        bodies = requests(args.requests, objectives, args.max_tokens, model)
        run(url, bodies[:1], 1, headers)  # warm-up: first-call costs stay out of the figures
        runs = [run(url, bodies, clients, headers) for clients in levels]
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
    tokens = {sum(r.tokens) for r in runs}
    print(f"model {model}, objectives {', '.join(objectives)}; {args.requests} requests of up "
          f"to {args.max_tokens} tokens, each with its own weights and seed; "
          f"{os.cpu_count()} CPUs, load average at the start: {load:.1f}")
    print(table(runs))
    if len(tokens) != 1:
        print(f"note: the runs generated different token counts {sorted(tokens)}")
    print(json.dumps({"runs": [r.figures for r in runs]}))


if __name__ == "__main__":
    main()
