"""The steering report's tables, from the points `mavis pareto` saved (see README.md here).

    python reports/steering/tables.py > reports/steering/tables.md

For each bundled objective: pi_ref, best-of-4 and MAVIS with that objective's weight 1 (from the
front that has it), their gains, KL against pi_ref (equation 7) and over plain top-k sampling;
for each front: the points in lambda order and whether each objective's reward moves
monotonically with lambda within the standard errors.
"""

from __future__ import annotations

import json
from pathlib import Path

from mavis.evaluation.fronts import dominates, hypervolume
from mavis.evaluation.summary import method_mips

HERE = Path(__file__).resolve().parent
FRONTS = {"relevant-harmless": ("relevant", "harmless"),
          "relevant-positive": ("relevant", "positive")}


def points(name: str) -> dict[str, dict]:
    return json.loads((HERE / f"{name}.json").read_text())["points"]


def find(saved: dict[str, dict], method: str, weights: dict[str, float]) -> dict | None:
    for point in saved.values():
        if point["method"] == method and all(
                abs(point["weights"].get(k, 0.0) - v) < 1e-9 for k, v in weights.items()):
            return point
    return None


def single_objective_table() -> list[str]:
    rows = ["| objective | pi_ref | best-of-4 | gain | MAVIS (weight 1) | gain | MAVIS KL "
            "(eq. 7) | KL over top-k | best-of-4 KL (bound) | beta used | MAVIS >= best-of-4 "
            "gain, KL over top-k <= 10 |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    done = set()
    for name, (first, second) in FRONTS.items():
        if not (HERE / f"{name}.json").exists():
            continue
        saved = points(name)
        reference = next(p for p in saved.values() if p["method"] == "pi_ref")
        for objective in (first, second):
            if objective in done:
                continue
            done.add(objective)
            other = second if objective == first else first
            weights = {objective: 1.0, other: 0.0}
            mavis, bon = find(saved, "MAVIS", weights), find(saved, "best-of-4", weights)
            if mavis is None or bon is None:
                continue
            ref = reference["reward"][objective]
            gain_m, gain_b = mavis["reward"][objective] - ref, bon["reward"][objective] - ref
            passed = gain_m >= gain_b and mavis["kl_topk"] <= 10.0
            rows.append(
                f"| {objective} | {ref:.3f} ± {reference['reward_se'][objective]:.3f} | "
                f"{bon['reward'][objective]:.3f} ± {bon['reward_se'][objective]:.3f} | "
                f"{gain_b:+.3f} | {mavis['reward'][objective]:.3f} ± "
                f"{mavis['reward_se'][objective]:.3f} | {gain_m:+.3f} | {mavis['kl']:.1f} | "
                f"{mavis['kl_topk']:.1f} | {bon['kl']:.1f} | {mavis.get('mean_beta', 0):.1f} | "
                f"{'yes' if passed else 'no'} |")
    return rows


def monotone(values: list[tuple[float, float]], rising: bool) -> bool:
    """Whether the rewards move one way as lambda rises, within two standard errors."""
    for (a, se_a), (b, se_b) in zip(values, values[1:], strict=False):
        step = b - a if rising else a - b
        if step < -2 * (se_a ** 2 + se_b ** 2) ** 0.5:
            return False
    return True


def front_table(name: str) -> list[str]:
    first, second = FRONTS[name]
    saved = points(name)
    rows = [f"### {first} vs {second}", "",
            f"| method | lambda ({first}) | {first} | {second} | KL (eq. 7) | KL over top-k | "
            "TV per step | beta used |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    series: dict[str, list[dict]] = {}
    for point in saved.values():
        series.setdefault(point["method"], []).append(point)
    for method, members in series.items():
        members.sort(key=lambda p: p["weights"].get(first, 0.0))
        for p in members:
            rows.append(f"| {method} | {p['weights'].get(first, float('nan')):g} | "
                        f"{p['reward'][first]:.3f} ± {p['reward_se'][first]:.3f} | "
                        f"{p['reward'][second]:.3f} ± {p['reward_se'][second]:.3f} | "
                        f"{p['kl']:.1f}{' (bound)' if p.get('kl_is_bound') else ''} | "
                        f"{p['kl_topk']:.1f} | {p['tv']:.3f} | {p.get('mean_beta', 0):.1f} |")
    mavis = series.get("MAVIS", [])
    rising = monotone([(p["reward"][first], p["reward_se"][first]) for p in mavis], True)
    falling = monotone([(p["reward"][second], p["reward_se"][second]) for p in mavis], False)
    bon = series.get("best-of-4", [])
    beaten = [p["label"] for p in mavis if any(
        dominates((b["reward"][first], b["reward"][second]),
                  (p["reward"][first], p["reward"][second])) for b in bon)]
    reference = series["pi_ref"][0]["reward"]
    origin = (reference[first], reference[second])
    volumes = {method: hypervolume([(p["reward"][first], p["reward"][second]) for p in members],
                                   origin)
               for method, members in series.items() if method != "pi_ref"}
    mips = method_mips([(p["method"], p["weights"], p["reward"]) for p in saved.values()],
                       [first, second])
    rows += ["", f"MAVIS's {first} reward rises with lambda within two standard errors: "
             f"{'yes' if rising else 'no'}; its {second} reward falls: "
             f"{'yes' if falling else 'no'}. MAVIS points dominated by a best-of-4 point: "
             f"{', '.join(beaten) or 'none'}. Hypervolume above pi_ref's rewards: "
             + ", ".join(f"{m} {v:.4f}" for m, v in volumes.items()) + ". MIP (the mean "
             "over the weight vectors of weights . rewards; pi_ref at each): "
             + ", ".join(f"{m} {v:.4f}" for m, v in mips.items()) + "."]
    return rows


def main() -> None:
    lines = ["## Each objective at weight 1", "", *single_objective_table(), "",
             "## The fronts", ""]
    for name in FRONTS:
        if (HERE / f"{name}.json").exists():
            lines += [*front_table(name), ""]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
