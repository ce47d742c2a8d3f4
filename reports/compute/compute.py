"""Reward against cost: MAVIS, its search modes and best-of-N from pi_ref, measured in one run.

    python reports/compute/compute.py --limit 24            # 48 held-out prompts (resumes)
    python reports/compute/compute.py --limit 24 --report   # tables and plots from what is saved

Every answer is sampled once and kept (answers/*.jsonl, with its rewards, KL, value, tokens and
value-model tokens); best-of-N for smaller N uses the first N of each prompt's answers (they
are i.i.d. draws), so N = 1, 2, 3, ..., 16 of pi_ref and N = 1, ..., 4 of MAVIS cost one
sampling pass each. Per answer:

    seconds   measured: the sampler's wall-clock time per answer, batched as `mavis evaluate`
              and `mavis pareto` batch (16 rows), on this machine's threads, x N, plus the
              reward calls' measured time x N when the reward models choose; and at batch 1
              (a timing pass over the first prompts)
    FLOPs     counted (`mavis.evaluation.cost`): transfers to a GPU

Cases: each bundled objective at weight 1, and 0.5/0.5 on the two trade-off pairs. Methods:
pi_ref; best-of-N by reward; MAVIS (default guidance: beta up to 16 under 10 nats per answer);
MAVIS + best-of-N by reward (`mavis-bon`); MAVIS + value rerank (`mavis-rerank`, no reward
model at inference); with `--beams 2,4,8`, MAVIS beam search with N beams on the two trade-off
pairs (one prompt at a time, so it is costed at batch 1; of its N answers the one with the
highest weighted reward counts). KL: equation 7 for single answers; best-of-N's is the chosen
answers' measured log-ratio plus log N - (N-1)/N; beam search's is its answers' path
log-ratio (it is no sampling policy).

Two equal-cost tables: MAVIS with one answer against best-of-N at batch 16 (N = MAVIS's
relative time rounded up), and at batch 1, for N = 2, 4, 8, the best MAVIS mode that costs no
more than best-of-N there, on the 0.5/0.5 pairs. At batch 1 (one request at a time) the N
answers of best-of-N and of MAVIS + best-of-N are also timed drawn together, as a batch of N
for the one request, and costed the faster way: beam search batches its beams too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from mavis.paths import write_text_atomic

HERE = Path(__file__).resolve().parent  # where the answers and the report go (--out)
CASES = {"relevant": {"relevant": 1.0}, "harmless": {"harmless": 1.0},
         "positive": {"positive": 1.0},
         "relevant+harmless": {"relevant": 0.5, "harmless": 0.5},
         "relevant+positive": {"relevant": 0.5, "positive": 0.5}}
OBJECTIVES = ["relevant", "harmless", "positive"]
PAIRS = ["relevant+harmless", "relevant+positive"]


def prompts(limit: int) -> list:
    from mavis.models.loading import load_tokenizer
    from mavis.prompts import load_prompts

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    return [p for name in ("chitchat", "harmful")
            for p in load_prompts(name, "test", tokenizer=tokenizer, limit=limit)]


def sample(decoder, chosen, out: Path, n: int, **fields) -> dict:
    """n answers per prompt (kept in `out`, reused when there), their rewards, the time."""
    if out.exists():
        return json.loads(out.read_text())
    from mavis.evaluation.cost import decoding_flops, prompt_lengths
    from mavis.objectives import score_all

    started = time.perf_counter()
    answers = decoder.generate(chosen, num_samples=n, batch_size=16, seed=0, max_new_tokens=48,
                               progress=True, **fields)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    rewards = score_all(OBJECTIVES, [a.prompt for a in answers], [a.text for a in answers])
    scoring = time.perf_counter() - started
    lengths = prompt_lengths(decoder, chosen)
    rows = [{"prompt": i // n, "text": a.text, "kl": a.kl, "kl_topk": a.kl_topk,
             "value": a.value, "tokens": len(a.token_ids), "beta": a.mean_beta,
             "flops": decoding_flops(decoder, a, lengths[i // n]),
             "rewards": {k: float(v[i]) for k, v in rewards.items()}}
            for i, a in enumerate(answers)]
    data = {"n": n, "prompts": len(chosen), "seconds": seconds, "scoring_seconds": scoring,
            "answers": rows, "fields": {k: v for k, v in fields.items()}}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(data))
    return data


def beam_answers(decoder, chosen, out: Path, n: int, weights: dict[str, float]) -> dict:
    """MAVIS beam search with n beams for each prompt, one prompt at a time (kept in `out`):
    all n answers of each search with their rewards, the time of the searches and of scoring."""
    if out.exists():
        return json.loads(out.read_text())
    from tqdm.auto import tqdm

    from mavis.decoding.search import BeamSettings, beam_search
    from mavis.objectives import score_all
    from mavis.prompts.formatting import prompt_text

    started = time.perf_counter()
    groups = [beam_search(decoder, prompt, beam=BeamSettings(num_beams=n), weights=weights,
                          seed=0, max_new_tokens=48)
              for prompt in tqdm(chosen, desc=f"beam-{n} {','.join(weights)}", unit="prompt")]
    seconds = time.perf_counter() - started
    flat = [(i, a) for i, group in enumerate(groups) for a in group]
    started = time.perf_counter()
    rewards = score_all(OBJECTIVES, [prompt_text(chosen[i]) for i, _ in flat],
                        [a.text for _, a in flat])
    scoring = time.perf_counter() - started
    rows = [{"prompt": i, "text": a.text, "kl": a.kl, "kl_topk": a.kl_topk, "value": a.value,
             "tokens": len(a.token_ids),
             "rewards": {k: float(v[j]) for k, v in rewards.items()}}
            for j, (i, a) in enumerate(flat)]
    data = {"n": n, "prompts": len(chosen), "seconds": seconds, "scoring_seconds": scoring,
            "answers": rows, "weights": weights}
    write_text_atomic(out, json.dumps(data))
    return data


def cpu_name() -> str:
    """lscpu's model name and whether it computes bfloat16 natively (ratios depend on both)."""
    from mavis.models.dtypes import cpu_has_native_bf16

    name = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({'native' if cpu_has_native_bf16() else 'no native'} bfloat16)"


def batch_one_seconds(decoder, chosen, out: Path, n: int = 1, **fields) -> float:
    """Seconds per request over `chosen`, one prompt at a time (kept in `out`): one answer
    (batch 1), or with n > 1 the n answers of one request drawn together (batch n), as a
    server would draw best-of-n."""
    if out.exists():
        return json.loads(out.read_text())["seconds_per_answer"]
    started = time.perf_counter()
    decoder.generate(chosen, num_samples=n, batch_size=n, seed=0, max_new_tokens=48, **fields)
    per_answer = (time.perf_counter() - started) / len(chosen)
    out.write_text(json.dumps({"seconds_per_answer": per_answer, "answers": len(chosen),
                               "samples_per_request": n}))
    return per_answer


def measure(limit: int, timing_prompts: int, guided_n: int, plain_n: int,
            value_model: str | None, value_dtype: str, beams: list[int],
            value_min_p: float = 0.0, guided_settings: dict | None = None) -> None:
    from mavis.decoding.decoder import MavisDecoder
    from mavis.models.bundled import bundled_value_models
    from mavis.models.dtypes import resolve_dtype

    chosen = prompts(limit)
    folders = ([value_model] if value_model else
               sorted({str(f) for f in bundled_value_models().values()}))
    decoder = MavisDecoder.load("smollm2-135m-instruct", folders, value_dtype=value_dtype)
    answers = HERE / "answers"
    answers.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parents[2]
    shown = [str(Path(f).resolve().relative_to(root)) if Path(f).resolve().is_relative_to(root)
             else f for f in folders]
    setup = {"value_models": shown, "value_dtype": value_dtype,
             "value_dtype_resolved": str(resolve_dtype(value_dtype, "cpu")).removeprefix("torch."),
             "cpu": cpu_name(), "value_min_p": value_min_p}
    # MAVIS's answers only
    guided = {**({"value_min_p": value_min_p} if value_min_p else {}), **(guided_settings or {})}
    if guided_settings:
        setup["guided"] = guided
    (answers / "setup.json").write_text(json.dumps(setup, indent=2))
    print(f"{len(chosen)} prompts", file=sys.stderr)
    sample(decoder, chosen, answers / "pi_ref.json", plain_n, beta=0.0)
    for case, weights in CASES.items():
        sample(decoder, chosen, answers / f"mavis-{case}.json", guided_n, weights=weights,
               **guided)
    timing = chosen[:timing_prompts]
    batch_one_seconds(decoder, timing, answers / "batch1-pi_ref.json", beta=0.0)
    for case, weights in CASES.items():
        batch_one_seconds(decoder, timing, answers / f"batch1-mavis-{case}.json",
                          weights=weights, **guided)
    for n in (2, 4, 8):  # best-of-n for one request: its n answers drawn together
        if n <= plain_n:
            batch_one_seconds(decoder, timing, answers / f"batch1-pi_ref-x{n}.json", n,
                              beta=0.0)
    for case in PAIRS:
        if guided_n > 1:
            batch_one_seconds(decoder, timing, answers / f"batch1-mavis-{case}-x{guided_n}.json",
                              guided_n, weights=CASES[case], **guided)
    for n in beams:
        for case in PAIRS:
            beam_answers(decoder, chosen, answers / f"beam{n}-{case}.json", n, CASES[case])


def pick(data: dict, n: int, weights: dict[str, float], rank: str) -> list[dict]:
    """Per prompt, the best of its first n answers (by weighted reward, or by value)."""
    groups: dict[int, list[dict]] = {}
    for row in data["answers"]:
        groups.setdefault(row["prompt"], []).append(row)
    best = []
    for rows in groups.values():
        first = rows[:n]
        if rank == "value":
            best.append(max(first, key=lambda r: r["value"]))
        else:
            best.append(max(first, key=lambda r: sum(w * r["rewards"][k]
                                                       for k, w in weights.items())))
    return best


def summary(kept: list[dict], weights: dict[str, float], n: int) -> dict:
    def mean_se(values):
        values = np.asarray(values, dtype=float)
        return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))

    weighted = [sum(w * r["rewards"][k] for k, w in weights.items()) for r in kept]
    bound = math.log(n) - (n - 1) / n if n > 1 else 0.0
    reward, se = mean_se(weighted)
    return {"reward": reward, "reward_se": se,
            "kl": float(np.mean([r["kl"] for r in kept])) + bound,
            "kl_topk": float(np.mean([r["kl_topk"] for r in kept])) + bound,
            **{f"reward_{k}": float(np.mean([r["rewards"][k] for r in kept]))
               for k in OBJECTIVES}}


def points(case: str, limit_n: dict) -> list[dict]:
    """Every method's point for one case, with its cost relative to pi_ref's one answer."""
    from mavis.evaluation.cost import reward_flops

    answers = HERE / "answers"
    weights = CASES[case]
    plain = json.loads((answers / "pi_ref.json").read_text())
    guided = json.loads((answers / f"mavis-{case}.json").read_text())
    weighted_objectives = [k for k, w in weights.items() if w > 0]
    rows = []
    for name, data, ns, ranks in (("best-of", plain, limit_n["plain"], ["reward"]),
                                  ("MAVIS", guided, limit_n["guided"], ["reward", "value"])):
        answers_per = len(data["answers"])
        per_answer = data["seconds"] / answers_per
        scoring = data["scoring_seconds"] / answers_per  # all objectives; an upper bound
        flops = float(np.mean([r["flops"] for r in data["answers"]]))
        tokens = float(np.mean([r["tokens"] for r in data["answers"]]))
        for n in ns:
            for rank in (ranks if n > 1 else ["reward"]):
                kept = pick(data, n, weights, rank)
                label = _label(name, n, rank)
                uses_reward = n > 1 and rank == "reward"
                seconds = n * per_answer + (n * scoring if uses_reward else 0.0)
                cost = n * flops + (n * reward_flops(weighted_objectives, 0, int(tokens))
                                    if uses_reward else 0.0)
                rows.append({"case": case, "method": label, "n": n, "rank": rank,
                             "seconds_per_answer": seconds, "flops_per_answer": cost,
                             **summary(kept, weights, n)})
    reference = next(r for r in rows if r["method"] == "pi_ref")
    for row in rows:
        row["relative_seconds"] = row["seconds_per_answer"] / reference["seconds_per_answer"]
        row["relative_flops"] = row["flops_per_answer"] / reference["flops_per_answer"]
        row["gain"] = row["reward"] - reference["reward"]
    return rows


def _label(name: str, n: int, rank: str) -> str:
    if name == "best-of":
        return "pi_ref" if n == 1 else f"best-of-{n}"
    if n == 1:
        return "MAVIS"
    return f"MAVIS+{'rerank' if rank == 'value' else 'best-of'}-{n}"


def report(limit_n: dict) -> None:
    rows = [row for case in CASES for row in points(case, limit_n)]
    answers = HERE / "answers"
    batch_one = {}
    for case in CASES:
        plain = json.loads((answers / "batch1-pi_ref.json").read_text())["seconds_per_answer"]
        guided = json.loads((answers / f"batch1-mavis-{case}.json").read_text())
        batch_one[case] = guided["seconds_per_answer"] / plain
    at_batch_one = [row for case in PAIRS for row in batch_one_points(case, rows)]
    (HERE / "points.json").write_text(json.dumps({"points": rows, "batch1_mavis_relative":
                                                  batch_one, "batch1_points": at_batch_one},
                                                 indent=2))
    lines = [*equal_cost_table(rows, batch_one), "", *batch_one_table(at_batch_one)]
    (HERE / "tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(rows)


def batch_one_points(case: str, rows: list[dict]) -> list[dict]:
    """The case's points costed at batch 1 (one request at a time), relative to one pi_ref
    answer there: best-of-N and the MAVIS modes from their batch-16 answers (the same draws)
    with batch-1 times (N answers of a request drawn together where that was timed and
    faster than one after another), and beam search's measured searches."""
    answers = HERE / "answers"
    plain = json.loads((answers / "batch1-pi_ref.json").read_text())["seconds_per_answer"]
    guided = json.loads((answers / f"batch1-mavis-{case}.json").read_text())["seconds_per_answer"]
    reference = json.loads((answers / "pi_ref.json").read_text())
    scoring = reference["scoring_seconds"] / len(reference["answers"])
    base = next(r for r in rows if r["case"] == case and r["method"] == "pi_ref")
    out = []
    for row in rows:
        if row["case"] != case:
            continue
        n, best_of = row["n"], _family(row["method"]) == "best-of"
        together = answers / (f"batch1-pi_ref-x{n}.json" if best_of else
                              f"batch1-mavis-{case}-x{n}.json")
        sampler = (plain if best_of else guided) * n  # n answers one after another
        if n > 1 and together.exists():  # or drawn together, when that was timed
            sampler = min(sampler, json.loads(together.read_text())["seconds_per_answer"])
        uses_reward = n > 1 and row["rank"] == "reward"
        seconds = sampler + (n * scoring if uses_reward else 0.0)
        out.append({**row, "seconds_per_answer": seconds, "relative_seconds": seconds / plain})
    for path in sorted(answers.glob(f"beam*-{case}.json")):
        data = json.loads(path.read_text())
        n, weights = data["n"], CASES[case]
        seconds = (data["seconds"] + data["scoring_seconds"]) / data["prompts"]
        kept = pick(data, n, weights, "reward")
        summary_row = summary(kept, weights, 1)  # path log-ratio: no best-of-N bound
        out.append({"case": case, "method": f"beam-{n}", "n": n, "rank": "reward",
                    "seconds_per_answer": seconds, "relative_seconds": seconds / plain,
                    "kl_kind": "path", **summary_row,
                    "gain": summary_row["reward"] - base["reward"]})
    return out


def batch_one_table(rows: list[dict]) -> list[str]:
    """Per pair and N in 2, 4, 8: best-of-N at batch 1 against the best MAVIS mode (one
    answer, MAVIS + best-of-n, MAVIS + value rerank, beam search) costing no more there."""
    lines = ["| case (0.5/0.5) | N | best-of-N gain | its relative time (batch 1) | best MAVIS "
             "mode at <= that time | its gain | its relative time | its KL | MAVIS wins |",
             "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | :---: |"]
    for case in PAIRS:
        own = [r for r in rows if r["case"] == case]
        for n in (2, 4, 8):
            bon = next((r for r in own if r["method"] == f"best-of-{n}"), None)
            if bon is None:
                continue
            modes = [r for r in own if _family(r["method"]) != "best-of"
                     and r["relative_seconds"] <= bon["relative_seconds"]]
            best = max(modes, key=lambda r: r["gain"], default=None)
            mode = (f"{best['method']} | {best['gain']:+.3f} ± {best['reward_se']:.3f} | "
                    f"{best['relative_seconds']:.2f} | {best['kl']:.1f}"
                    f"{' (path)' if best.get('kl_kind') == 'path' else ''}"
                    if best else "none measured | | |")
            wins = best is not None and best["gain"] > bon["gain"]
            lines.append(f"| {case} | {n} | {bon['gain']:+.3f} | {bon['relative_seconds']:.2f} | "
                         f"{mode} | {'yes' if wins else 'no'} |")
    return lines


def equal_cost_table(rows: list[dict], batch_one: dict) -> list[str]:
    """Per case: MAVIS with one answer against best-of-N at the same or higher measured cost
    (N = the smallest whole number >= MAVIS's time relative to pi_ref's)."""
    lines = ["| case | MAVIS gain | its KL over top-k | relative time (batch 16) | (batch 1) | "
             "N | best-of-N gain | its KL | MAVIS wins (KL over top-k <= 10) | best MAVIS mode "
             "at <= N's cost |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: | --- |"]
    for case in CASES:
        own = [r for r in rows if r["case"] == case]
        mavis = next(r for r in own if r["method"] == "MAVIS")
        n = max(2, math.ceil(mavis["relative_seconds"] - 1e-9))
        bon = min((r for r in own if r["method"].startswith("best-of-") and r["n"] >= n),
                  key=lambda r: r["n"], default=None)
        modes = [r for r in own if r["method"].startswith("MAVIS")
                 and bon is not None and r["relative_seconds"] <= bon["relative_seconds"]]
        best = max(modes, key=lambda r: r["reward"]) if modes else None
        wins = bon is not None and mavis["gain"] > bon["gain"] and mavis["kl_topk"] <= 10
        baseline = (f"{bon['n']} | {bon['gain']:+.3f} | {bon['kl']:.1f}" if bon else
                    "more than measured | | ")
        lines.append(
            f"| {case} | {mavis['gain']:+.3f} ± {mavis['reward_se']:.3f} | "
            f"{mavis['kl_topk']:.1f} | {mavis['relative_seconds']:.2f} | "
            f"{batch_one[case]:.2f} | {baseline} | {'yes' if wins else 'no'} | "
            + (f"{best['method']} {best['gain']:+.3f} |" if best else " |"))
    return lines


def plot(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CASES), figsize=(4.2 * len(CASES), 3.8), sharey=False)
    for ax, case in zip(axes, CASES, strict=True):
        own = [r for r in rows if r["case"] == case]
        for family, marker in (("best-of", "o"), ("MAVIS+best-of", "s"), ("MAVIS+rerank", "^")):
            members = sorted((r for r in own if _family(r["method"]) == family),
                             key=lambda r: r["relative_seconds"])
            ax.errorbar([r["relative_seconds"] for r in members],
                        [r["reward"] for r in members],
                        yerr=[r["reward_se"] for r in members], marker=marker, capsize=2,
                        label=family)
        mavis = next(r for r in own if r["method"] == "MAVIS")
        ax.errorbar([mavis["relative_seconds"]], [mavis["reward"]], yerr=[mavis["reward_se"]],
                    marker="*", markersize=12, color="black", label="MAVIS", linestyle="")
        ax.set_xscale("log", base=2)
        ax.set_title(case)
        ax.set_xlabel("seconds per answer / pi_ref's (batch 16)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("weighted reward (held-out prompts)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "reward-vs-cost.png", dpi=120)


def _family(method: str) -> str:
    if method == "pi_ref":
        return "best-of"
    return method.rsplit("-", 1)[0]


def guided_settings(items: list[str]) -> dict:
    """`--guided FIELD=VALUE` items as SamplingSettings fields (numbers as numbers), checked."""
    from dataclasses import fields

    from mavis.decoding.sampling import SamplingSettings
    from mavis.errors import MavisError

    known = {f.name for f in fields(SamplingSettings)}
    settings = {}
    for item in items:
        name, _, text = item.partition("=")
        if name not in known or not text:
            sys.exit(f"--guided {item!r}: give FIELD=VALUE with FIELD one of "
                     f"{', '.join(sorted(known))}")
        try:
            settings[name] = json.loads(text)
        except json.JSONDecodeError:
            settings[name] = text
    try:
        SamplingSettings(**settings)  # a bad value fails here, before any model loads
    except (MavisError, TypeError) as exc:
        sys.exit(f"--guided: {exc}")
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=24, help="prompts per set")
    parser.add_argument("--timing-prompts", type=int, default=8)
    parser.add_argument("--guided-n", type=int, default=4)
    parser.add_argument("--plain-n", type=int, default=16)
    parser.add_argument("--report", action="store_true", help="only the tables and plot")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--beams", default="",
                        help="beam counts for MAVIS beam search on the pairs, e.g. 2,4,8")
    parser.add_argument("--value-min-p", type=float, default=0.0,
                        help="MAVIS's value_min_p (default 0: the library's default)")
    parser.add_argument("--guided", action="append", default=[], metavar="FIELD=VALUE",
                        help="a sampling setting of MAVIS's answers (a SamplingSettings field), "
                        "e.g. certain_p=0.7; repeatable")
    parser.add_argument("--value-model", help="a value-model folder (default: the bundled)")
    parser.add_argument("--value-dtype", default=None,
                        help="float32, bfloat16 or auto (default: the library's default)")
    args = parser.parse_args()
    globals()["HERE"] = args.out
    if not args.report:
        from mavis.cli.quiet import quiet
        from mavis.models.names import DEFAULT_VALUE_DTYPE

        with contextlib.ExitStack() as stack:  # the libraries' noise out, as the CLI does
            quiet(stack)
            measure(args.limit, args.timing_prompts, args.guided_n, args.plain_n,
                    args.value_model, args.value_dtype or DEFAULT_VALUE_DTYPE,
                    [int(n) for n in args.beams.split(",") if n.strip()], args.value_min_p,
                    guided_settings(args.guided))
    # best-of-N for every N up to the answers drawn (the first N of each prompt's), so that the
    # equal-cost comparison takes N = MAVIS's relative time rounded up, not the next power of 2
    report({"plain": list(range(1, args.plain_n + 1)),
            "guided": list(range(1, args.guided_n + 1))})


if __name__ == "__main__":
    main()
