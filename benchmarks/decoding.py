"""Decoding speed: plain top-k sampling against MAVIS, measured in one run.

    python benchmarks/decoding.py                 # full grid (a few minutes on a 2-core CPU)
    python benchmarks/decoding.py --quick         # headline cases only

Models: the packaged default reference (SmolLM2-135M-Instruct) and value models on the default
value backbone (its first 6 layers + a regression head). Speed depends on shapes, not on trained
weights, so the value heads are random. Every MAVIS run generates exactly --new-tokens tokens
per row (EOS ignored), as does the plain baseline (`generate` with min_new_tokens).

Levers compared (M = number of objectives):
  separate        one value model per objective (the paper's setting)
  shared          one backbone with M heads (distilled / jointly trained), one pass per step
  separate+skip   candidate skipping with a total-variation bound epsilon per step; needs the
                  value range of the heads (here [0, 1] per objective, the built-in rewards')
  shared bf16     the shared value model in bfloat16 (the reference stays fp32)
  shared 4-layer  a smaller value backbone (first 4 layers instead of 6)
With --threads N, torch uses N threads for every case.
The last line printed is JSON for the headline case (batch 1, M = 2, k = 40).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import time

import torch

from mavis.decoding.decoder import MavisDecoder
from mavis.models.loading import (
    load_backbone,
    load_causal_lm,
    load_tokenizer,
    tokenizer_fingerprint,
)
from mavis.models.value_folder import ValueModelConfig
from mavis.models.value_model import ValueModel

PROMPTS = [
    "Tell me about your favourite book and why you like it.",
    "How can I make my neighbour stop playing loud music at night?",
    "Write a short note to cheer up a friend who failed an exam.",
    "What is the best way to learn a new language as an adult?",
]


def value_models(base: str, layers: int, objectives: list[list[str]]) -> list[ValueModel]:
    """Value models with random heads; one backbone load is shared to save time."""
    fingerprint = tokenizer_fingerprint(load_tokenizer(base))
    models = []
    for names in objectives:
        config = ValueModelConfig(base=base, objectives=names, num_layers=layers, lora=None,
                                  tokenizer_fingerprint=fingerprint,
                                  value_range={n: [0.0, 1.0] for n in names})
        torch.manual_seed(len(models))
        models.append(ValueModel(load_backbone(base, layers), config).eval())
    return models


CPU_SECONDS: list[float] = []


def timed(fn) -> tuple[float, object]:
    """Wall seconds of fn(); its CPU seconds (all threads of this process) go to CPU_SECONDS,
    the steadier figure on a machine shared with other work."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    CPU_SECONDS.append(time.process_time() - cpu)
    return time.perf_counter() - start, out


def plain_tok_s(model, tokenizer, batch: int, k: int, new_tokens: int) -> float:
    from mavis.models.loading import apply_chat_template

    texts = [apply_chat_template(tokenizer, PROMPTS[i % len(PROMPTS)]) for i in range(batch)]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(0)
    with torch.inference_mode():
        seconds, out = timed(lambda: model.generate(
            **enc, do_sample=True, top_k=k, max_new_tokens=new_tokens,
            min_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id))
    assert out.shape[1] - enc["input_ids"].shape[1] == new_tokens
    return batch * new_tokens / seconds


def mavis_tok_s(decoder: MavisDecoder, batch: int, k: int, new_tokens: int,
                weights: dict[str, float] | None, beta: float,
                epsilon: float = 0.0) -> tuple[float, float]:
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    seconds, out = timed(lambda: decoder.generate(
        prompts, weights=weights, beta=beta, top_k=k, max_new_tokens=new_tokens, seed=0,
        batch_size=batch, ignore_eos=True, candidate_epsilon=epsilon))
    assert all(len(s.token_ids) == new_tokens for s in out)
    return batch * new_tokens / seconds, 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--layers", type=int, default=6, help="value backbone layers")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--beta", type=float, default=8.0)
    parser.add_argument("--epsilon", type=float, default=1e-3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tokenizer = load_causal_lm(args.model)
    names = ["relevant", "harmless", "positive"]
    separate = value_models(args.model, args.layers, [[n] for n in names])
    shared = {m: value_models(args.model, args.layers, [names[:m]])[0] for m in (2, 3)}
    shared_bf16 = copy.deepcopy(shared[2]).to(torch.bfloat16)
    shared_small = value_models(args.model, 4, [names[:2]])[0]
    rows = []

    def record(**row):
        rows.append(row)
        print(json.dumps(row), flush=True)

    ks = [40] if args.quick else [10, 40]
    ms = [2] if args.quick else [1, 2, 3]
    for batch in (1, 16):
        for k in ks:
            plain = plain_tok_s(model, tokenizer, batch, k, args.new_tokens)
            plain_cpu = CPU_SECONDS[-1]
            loop, _ = mavis_tok_s(MavisDecoder(model, tokenizer, []), batch, k,
                                  args.new_tokens, None, 0.0)
            record(case="mavis loop, beta=0", batch=batch, k=k, M=0, tok_s=round(loop, 2),
                   plain_tok_s=round(plain, 2), ratio=round(loop / plain, 3),
                   cpu_ratio=round(plain_cpu / CPU_SECONDS[-1], 3))
            for m in ms:
                weights = {n: 1.0 / m for n in names[:m]}
                variants = [("separate", separate[:m], 0.0)]
                if m in shared:
                    variants.append(("shared", [shared[m]], 0.0))
                if m == 2 and k == 40:
                    variants += [("separate+skip", separate[:m], args.epsilon),
                                 ("shared bf16", [shared_bf16], 0.0),
                                 ("shared 4-layer", [shared_small], 0.0)]
                for label, vms, eps in variants:
                    dec = MavisDecoder(model, tokenizer, vms)
                    tok_s, _ = mavis_tok_s(dec, batch, k, args.new_tokens, weights, args.beta, eps)
                    record(case=label, batch=batch, k=k, M=m, tok_s=round(tok_s, 2),
                           plain_tok_s=round(plain, 2), ratio=round(tok_s / plain, 3),
                           cpu_ratio=round(plain_cpu / CPU_SECONDS[-1], 3), epsilon=eps)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    head = [r for r in rows if r["batch"] == 1 and r["M"] == 2 and r["k"] == 40]
    best = max(head, key=lambda r: r["ratio"])
    print(json.dumps({"plain_tok_s": best["plain_tok_s"], "mavis_tok_s": best["tok_s"],
                      "ratio": best["ratio"], "cpu_ratio": best["cpu_ratio"], "batch": 1,
                      "M": 2, "k": 40, "case": best["case"], "threads": torch.get_num_threads(),
                      "load_average": round(os.getloadavg()[0], 2),
                      "peak_rss_mb": round(peak_mb)}))


if __name__ == "__main__":
    main()
