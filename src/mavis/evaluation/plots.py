"""Plots of evaluations: Pareto fronts (reward of one objective against another, one line per
method) and the reward and KL of every iteration of Algorithm 1. PNG files only (no display)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

from mavis.evaluation.policy import PolicyEvaluation

matplotlib.use("Agg")  # file output only: no display needed
import matplotlib.pyplot as plt  # noqa: E402


def plot_pareto(series: Mapping[str, Sequence[PolicyEvaluation]], pair: tuple[str, str],
                out: str | Path, title: str = "") -> Path:
    """One line per method (e.g. MAVIS, best-of-N, reference), reward of pair[0] on x and
    pair[1] on y, with standard-error bars; saved as PNG."""
    first, second = pair
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for label, points in series.items():
        xs = [p.reward[first] for p in points]
        ys = [p.reward[second] for p in points]
        ax.errorbar(xs, ys, xerr=[p.reward_se[first] for p in points],
                    yerr=[p.reward_se[second] for p in points], marker="o", capsize=2,
                    label=label, linestyle="-" if len(points) > 1 else "none")
        for p, x, y in zip(points, xs, ys, strict=True):
            if len(points) > 1:
                ax.annotate(p.label.split("=")[-1], (x, y), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel(f"{first} reward")
    ax.set_ylabel(f"{second} reward")
    ax.set_title(title or f"{first} vs {second}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


def plot_iterations(rows: Sequence[Mapping], out: str | Path) -> Path:
    """Reward and KL per iteration for each objective (the improvement of Theorem 1)."""
    objectives = sorted({r["objective"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for name in objectives:
        mine = sorted((r for r in rows if r["objective"] == name), key=lambda r: r["iteration"])
        its = [r["iteration"] for r in mine]
        axes[0].plot(its, [r["mavis_reward"] for r in mine], marker="o", label=f"{name} MAVIS")
        axes[0].axhline(mine[0]["reference_reward"], linestyle=":", alpha=0.5)
        axes[1].plot(its, [r["mavis_kl"] for r in mine], marker="o", label=name)
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("mean held-out reward (dotted: pi_ref)")
    axes[1].set_xlabel("iteration")
    axes[1].set_ylabel("KL(pi || pi_ref), eq. 7")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, out)


def _save(fig, out: str | Path) -> Path:
    """Save beside `out`, then rename: a reader never sees half a picture."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    fig.tight_layout()
    try:
        fig.savefig(temp, dpi=120, format=out.suffix.lstrip(".") or "png")
        os.replace(temp, out)
    finally:
        plt.close(fig)
        temp.unlink(missing_ok=True)
    return out
