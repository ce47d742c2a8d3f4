"""Decoding speed: plain top-k sampling against MAVIS, measured in one run.

    python benchmarks/decoding.py                 # full grid (a few minutes on a 2-core CPU)
    python benchmarks/decoding.py --quick         # headline cases only
    python benchmarks/decoding.py --quick --batches 16 --cases "shared,shared min_p=0.1"

Models: the packaged default reference (SmolLM2-135M-Instruct) and value models on the bundled
default value model's backbone (its first `num_layers` layers + a regression head; --layers to
change). Speed depends on shapes, not on trained
weights, so the value heads are random. Every MAVIS run generates exactly --new-tokens tokens
per row (EOS ignored), as does the plain baseline (`generate` with min_new_tokens).

Levers compared (M = number of objectives):
  separate        one value model per objective (the paper's setting)
  shared          one backbone with M heads (distilled / jointly trained), one pass per step
  separate+skip   candidate skipping with a total-variation bound epsilon per step; needs the
                  value range of the heads (here [0, 1] per objective, the built-in rewards')
  shared bf16     the shared value model in bfloat16 (the reference stays fp32)
  shared 4-layer  a smaller value backbone (first 4 layers)
  shared min_p=P  the nucleus lever: only candidates at least P times as likely as the most
                  likely are scored (P from --min-p, e.g. 0.05,0.1); with "+ auto", the value
                  model also in the hardware's fastest dtype (`value_dtype="auto"`); steps
                  where every row keeps one candidate run no value model (forced steps); with
                  "+ bf16 reference", the reference in bfloat16 too (not a default: the KL's
                  footing would move with it)
  shared certain_p=P  the certain-step lever: a row whose most likely candidate has at least
                  probability P is sampled from plain top-k at that step, and the value model
                  reads only its drawn token (nothing when every row is certain); with
                  "+ auto", the value model in the hardware's fastest dtype too
  shared value_min_p=P  the scored-candidates lever: the value model reads only the
                  candidates at least P times as likely as the most likely (P from
                  --value-min-p); unlike min_p the others stay candidates, at the read ones'
                  mean value; "+ auto" as above
  plain bf16      the plain baseline in bfloat16 too: every ratio is against the fastest plain
With --compile (M = 2, k = 40 only; compilation happens in an untimed warm-up run):
  plain compiled  `generate` with a static cache and its forward under torch.compile
  shared static   the shared model with static caches (`MavisDecoder(compile="static")`)
  shared compiled static caches and compiled forwards (`MavisDecoder(compile=True)`)
With --threads N, torch uses N threads for every case.
Every row also counts what a step costs, so that a CPU run predicts a GPU's ratio:
gflop_per_token (2 FLOPs per linear weight per token read: the reference's token plus
value_tokens_per_step candidates through the value models), value_pass_share (the steps that
run the value models at all: a forced step, whose nucleus leaves every row one candidate, does
not), weight_mb_per_step (the weights a step of the whole batch reads, on average), and
the ratios to plain they predict: flop_ratio where compute bounds a step (big batches),
byte_ratio where reading the weights does (batch 1 on a GPU).
Every ratio is against the fastest plain baseline of the same batch and k (compiled plain when
it was measured and faster). The last line printed is JSON for the headline: the bundled
default configuration (one shared backbone, M = 2, k = 40, batch 1 and 16), whatever lever
was fastest.
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
from mavis.evaluation.cost import decoding_flops, linear_parameters, linear_weight_bytes
from mavis.models.bundled import bundled_value_models
from mavis.models.dtypes import fastest_value_dtype
from mavis.models.loading import (
    load_backbone,
    load_causal_lm,
    load_tokenizer,
    tokenizer_fingerprint,
)
from mavis.models.value_folder import ValueModelConfig, read_value_config
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


def bundled_layers(reference: str) -> int:
    """Backbone layers of the bundled default value model (6 when none is bundled)."""
    folders = bundled_value_models(reference)
    if not folders:
        return 6
    return read_value_config(next(iter(folders.values()))).num_layers or 6


def plain_tok_s(model, tokenizer, batch: int, k: int, new_tokens: int,
                compiled: bool = False) -> float:
    """`generate`'s tok/s; compiled: a static cache and the forward under torch.compile, timed
    after an untimed warm-up run that compiles."""
    if not compiled:
        return plain_run(model, tokenizer, batch, k, new_tokens, {})
    static = {"cache_implementation": "static"}
    model.forward = torch.compile(model.forward, dynamic=False)
    try:
        plain_run(model, tokenizer, batch, k, new_tokens, static)  # warm-up: compiles
        CPU_SECONDS.pop()
        return plain_run(model, tokenizer, batch, k, new_tokens, static)
    finally:
        del model.forward  # back to the class's eager forward


def plain_run(model, tokenizer, batch: int, k: int, new_tokens: int, extra: dict) -> float:
    from mavis.models.loading import apply_chat_template

    texts = [apply_chat_template(tokenizer, PROMPTS[i % len(PROMPTS)]) for i in range(batch)]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(0)
    with torch.inference_mode():
        seconds, out = timed(lambda: model.generate(
            **enc, do_sample=True, top_k=k, max_new_tokens=new_tokens,
            min_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id, **extra))
    assert out.shape[1] - enc["input_ids"].shape[1] == new_tokens
    return batch * new_tokens / seconds


def mavis_tok_s(decoder: MavisDecoder, batch: int, k: int, new_tokens: int,
                weights: dict[str, float] | None, beta: float,
                epsilon: float = 0.0, **levers) -> float:
    """MAVIS tok/s; a decoder with static caches first runs once untimed (allocation, and
    compilation when asked). `levers`: more sampling settings (min_p, top_p)."""
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]

    def run():
        return decoder.generate(
            prompts, weights=weights, beta=beta, top_k=k, max_new_tokens=new_tokens, seed=0,
            batch_size=batch, ignore_eos=True, candidate_epsilon=epsilon, **levers)

    if decoder.static_layout is not None:
        run()  # warm-up, untimed
    seconds, out = timed(run)
    assert all(len(s.token_ids) == new_tokens for s in out)
    return batch * new_tokens / seconds, out


def step_counts(decoder: MavisDecoder, out=None) -> dict:
    """What one decoding step costs, counted (so a CPU run predicts a GPU's ratio): GFLOPs per
    generated token of one row (`decoding_flops` of the answers, prompt left out), the candidate
    tokens the value models read per row and step, and the MB of weights a step of the whole
    batch reads. Without answers (`out`): the reference alone, one token per step."""
    value_models = list(decoder.guide.value_models) if out else []
    if out:
        flops = sum(decoding_flops(decoder, a, 0) for a in out) / sum(
            len(a.token_ids) for a in out)
        steps = [t for answer in out for t in answer.value_tokens]
        read = sum(steps) / len(steps)
        passes = sum(t > 0 for t in steps) / len(steps)
    else:
        flops, read, passes = 2.0 * linear_parameters(decoder.reference), 0.0, 0.0
    reference = linear_weight_bytes(decoder.reference)
    mb = (reference + passes * sum(linear_weight_bytes(m) for m in value_models)) / 1e6
    return {"value_tokens_per_step": round(read, 2), "value_pass_share": round(passes, 3),
            "gflop_per_token": round(flops / 1e9, 3), "weight_mb_per_step": round(mb, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--layers", type=int, default=None,
                        help="value backbone layers (default: the bundled default's)")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--beta", type=float, default=8.0)
    parser.add_argument("--epsilon", type=float, default=1e-3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--compile", action="store_true",
                        help="also static caches and torch.compile (plain and MAVIS)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--min-p", default="0.05,0.1",
                        help="min_p values of the nucleus lever (empty: none)")
    parser.add_argument("--batches", default="1,16", help="batch sizes, e.g. 1,16")
    parser.add_argument("--cases", default="",
                        help="only these MAVIS cases, comma-separated (default: all); the "
                        "plain baselines always run")
    parser.add_argument("--certain-p", default="0.9",
                        help="certain_p values of the certain-step lever (empty: none)")
    parser.add_argument("--value-min-p", default="0.1",
                        help="value_min_p values of the scored-candidates lever (empty: none)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    layers = args.layers or bundled_layers(args.model)

    model, tokenizer = load_causal_lm(args.model)
    names = ["relevant", "harmless", "positive"]
    separate = value_models(args.model, layers, [[n] for n in names])
    shared = {m: value_models(args.model, layers, [names[:m]])[0] for m in (2, 3)}
    shared_bf16 = copy.deepcopy(shared[2]).to(torch.bfloat16)
    shared_auto = copy.deepcopy(shared[2]).to(fastest_value_dtype("cpu"))
    model_bf16 = copy.deepcopy(model).to(torch.bfloat16)
    min_ps = [float(x) for x in args.min_p.split(",") if x.strip()]
    certain_ps = [float(x) for x in args.certain_p.split(",") if x.strip()]
    value_min_ps = [float(x) for x in args.value_min_p.split(",") if x.strip()]
    shared_small = value_models(args.model, 4, [names[:2]])[0]
    rows = []

    def record(**row):
        rows.append(row)
        print(json.dumps(row), flush=True)

    ks = [40] if args.quick else [10, 40]
    ms = [2] if args.quick else [1, 2, 3]
    only = {c.strip() for c in args.cases.split(",") if c.strip()}

    def measure(label, decoder, point, m, eps=0.0, **levers):
        if only and label not in only:
            return
        weights = {n: 1.0 / m for n in names[:m]} if m else None
        tok_s, out = mavis_tok_s(decoder, point["batch"], point["k"], args.new_tokens,
                                 weights, args.beta if m else 0.0, eps, **levers)
        counts = step_counts(decoder, out if m else None)
        record(case=label, batch=point["batch"], k=point["k"], M=m, tok_s=round(tok_s, 2),
               plain_case=point["plain_case"], plain_tok_s=round(point["plain_tok_s"], 2),
               ratio=round(tok_s / point["plain_tok_s"], 3),
               cpu_ratio=round(point["plain_cpu"] / CPU_SECONDS[-1], 3), epsilon=eps,
               **levers, **counts, **predicted(counts, point["counts"]))

    for batch in [int(b) for b in args.batches.split(",")]:
        for k in ks:
            plains = {"plain": (plain_tok_s(model, tokenizer, batch, k, args.new_tokens),
                                CPU_SECONDS[-1]),
                      "plain bf16": (plain_tok_s(model_bf16, tokenizer, batch, k,
                                                 args.new_tokens), CPU_SECONDS[-1])}
            if args.compile and k == 40:
                plains["plain compiled"] = (plain_tok_s(model, tokenizer, batch, k,
                                                        args.new_tokens, compiled=True),
                                            CPU_SECONDS[-1])
            fastest = max(plains, key=lambda case: plains[case][0])
            plain_counts = {case: step_counts(MavisDecoder(
                model_bf16 if case == "plain bf16" else model, tokenizer, []))
                for case in plains}
            point = {"batch": batch, "k": k, "plain_case": fastest,
                     "plain_tok_s": plains[fastest][0], "plain_cpu": plains[fastest][1],
                     "counts": plain_counts[fastest]}
            for label, (tok_s, _) in plains.items():
                record(case=label, batch=batch, k=k, M=0, tok_s=round(tok_s, 2),
                       plain_case=fastest, plain_tok_s=round(point["plain_tok_s"], 2),
                       ratio=round(tok_s / point["plain_tok_s"], 3), **plain_counts[label])
            measure("mavis loop, beta=0", MavisDecoder(model, tokenizer, []), point, 0)
            for m in ms:
                measure("separate", MavisDecoder(model, tokenizer, separate[:m]), point, m)
                if m in shared:
                    measure("shared", MavisDecoder(model, tokenizer, [shared[m]]), point, m)
                if m != 2 or k != 40:
                    continue
                measure("separate+skip", MavisDecoder(model, tokenizer, separate[:m]), point,
                        m, args.epsilon)
                measure("shared bf16", MavisDecoder(model, tokenizer, [shared_bf16]), point, m)
                measure("shared 4-layer", MavisDecoder(model, tokenizer, [shared_small]),
                        point, m)
                for min_p in min_ps:
                    measure(f"shared min_p={min_p:g}", MavisDecoder(model, tokenizer,
                                                                    [shared[m]]),
                            point, m, min_p=min_p)
                    measure(f"shared min_p={min_p:g} + auto", MavisDecoder(
                        model, tokenizer, [shared_auto]), point, m, min_p=min_p)
                for certain_p in certain_ps:
                    measure(f"shared certain_p={certain_p:g}", MavisDecoder(
                        model, tokenizer, [shared[m]]), point, m, certain_p=certain_p)
                    measure(f"shared certain_p={certain_p:g} + auto", MavisDecoder(
                        model, tokenizer, [shared_auto]), point, m, certain_p=certain_p)
                for value_min_p in value_min_ps:
                    measure(f"shared value_min_p={value_min_p:g}", MavisDecoder(
                        model, tokenizer, [shared[m]]), point, m, value_min_p=value_min_p)
                    measure(f"shared value_min_p={value_min_p:g} + auto", MavisDecoder(
                        model, tokenizer, [shared_auto]), point, m, value_min_p=value_min_p)
                if min_ps:  # what a bfloat16 reference would buy (not a default: the KL's
                    # footing would move with it)
                    measure(f"shared min_p={max(min_ps):g} + bf16 reference", MavisDecoder(
                        model_bf16, tokenizer, [shared[m]]), point, m, min_p=max(min_ps))
                if args.compile:
                    for label, mode in (("shared static", "static"),
                                        ("shared compiled", True)):
                        measure(label, MavisDecoder(model, tokenizer, [shared[m]],
                                                    compile=mode), point, m)
    headline(rows, layers)


def predicted(counts: dict, plain: dict) -> dict:
    """The ratio to plain that the counts predict where compute bounds a step (large batches)
    and where reading the weights does (batch 1 on a GPU)."""
    return {"flop_ratio": round(plain["gflop_per_token"] / counts["gflop_per_token"], 3),
            "byte_ratio": round(plain["weight_mb_per_step"] / counts["weight_mb_per_step"], 3)}


def headline(rows: list[dict], layers: int) -> None:
    """The bundled default configuration (one shared backbone, M = 2, k = 40) at batch 1 and
    16, by its fastest lever (eager / static / compiled), against the fastest plain."""
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = {"value_layers": layers, "M": 2, "k": 40, "threads": torch.get_num_threads(),
               "load_average": round(os.getloadavg()[0], 2), "peak_rss_mb": round(peak_mb)}
    for batch in sorted({r["batch"] for r in rows}):
        default = [r for r in rows if r["batch"] == batch and r["M"] == 2 and r["k"] == 40
                   and r["case"] in ("shared", "shared static", "shared compiled")]
        levers = [r for r in rows if r["batch"] == batch and r["M"] == 2 and r["k"] == 40
                  and r["case"].startswith("shared")]
        if not default or not levers:  # --cases left them out
            continue
        best = max(default, key=lambda r: r["ratio"])
        summary[f"batch{batch}"] = {key: best[key] for key in
                                    ("case", "tok_s", "plain_case", "plain_tok_s", "ratio")}
        fastest = max(levers, key=lambda r: r["ratio"])
        summary[f"batch{batch}_fastest_lever"] = {key: fastest[key] for key in
                                                  ("case", "tok_s", "ratio")}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
