"""Plots of evaluations: Pareto fronts (reward of one objective against another, one line per
method), a comparison of methods (their fronts with hypervolumes, and their KL), and the reward
and KL of every iteration of Algorithm 1. Picture files only (no display): PNG, or another
format of `PLOT_FORMATS` by the file's suffix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

from mavis.errors import MavisError
from mavis.evaluation.policy import KL_ESTIMATE, KL_PATH, PolicyEvaluation
from mavis.paths import atomic_path

matplotlib.use("Agg")  # file output only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

# The picture formats a plot may be written in: what matplotlib's Agg canvas writes without
# other tools (pgf needs LaTeX; avif, gif and webp depend on how Pillow was built).
PLOT_FORMATS = ("png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif", "tiff")


def check_plot_path(path: str | Path, what: str = "the plot") -> Path:
    """`path` if its suffix names a format of `PLOT_FORMATS`, else a MavisError saying which
    (checked before any work, not found when the plot is drawn at the end)."""
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        shown = f"ends in .{suffix}" if suffix else "has no suffix"
        raise MavisError(f"{what} {str(path)!r} {shown}, not a picture format matplotlib writes; "
                         f"end it in one of {', '.join('.' + f for f in PLOT_FORMATS)}, e.g. "
                         f"{path.with_suffix('.png').name}")
    return path


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
    return save_figure(fig, out)


def plot_comparison(series: Mapping[str, Sequence[PolicyEvaluation]], objectives: Sequence[str],
                    out: str | Path, hypervolumes: Mapping[str, float] | None = None,
                    dominated: Mapping[str, Sequence[bool]] | None = None,
                    title: str = "") -> Path:
    """Every method's front on one PNG: left, the rewards of objectives[0] (x) and [1] (y),
    one line per method (its hypervolume in the legend; points dominated within the method
    hollow); right, each point's KL against pi_ref by the weight of objectives[0] (dashed: an
    estimate plus a bound, best-of-N; dotted: beam search's path log-ratio, not a KL). With
    more than two objectives the left panel shows the first two (a projection) and no panel
    joins the points: weight vectors have no order there."""
    first, second = objectives[0], objectives[1]
    joined = len(objectives) == 2
    fig, (front, kl_ax) = plt.subplots(1, 2, figsize=(11, 4.6))
    for index, (method, points) in enumerate(series.items()):
        color = f"C{index % 10}"
        hv = f" (HV {hypervolumes[method]:.3g})" if hypervolumes and method in hypervolumes \
            else ""
        order = sorted(range(len(points)), key=lambda i: points[i].weights.get(first, 0.0))
        xs = [points[i].reward[first] for i in order]
        ys = [points[i].reward[second] for i in order]
        hollow = [bool(dominated[method][i]) if dominated and method in dominated else False
                  for i in order]
        front.plot(xs, ys, color=color, linestyle="-" if joined and len(points) > 1 else "none",
                   marker="o", label=method + hv)
        if any(hollow):
            front.scatter([x for x, h in zip(xs, hollow, strict=True) if h],
                          [y for y, h in zip(ys, hollow, strict=True) if h],
                          facecolors="white", edgecolors=color, zorder=3)
        shift = 0.008 * (index - (len(series) - 1) / 2)  # methods side by side, not on top
        _kl_panel(kl_ax, method, [points[i] for i in order], first, color, shift, joined)
    front.set_xlabel(f"{first} reward")
    front.set_ylabel(f"{second} reward")
    front.set_title("mean reward (hollow: dominated within its method)", fontsize=8)
    kl_ax.set_xlabel(f"weight of {first}")
    kl_ax.set_ylabel("KL(pi || pi_ref), nats per answer")
    kl_ax.set_title("KL against the same pi_ref (dashed: estimate + bound; dotted: path "
                    "log-ratio, not a KL)", fontsize=8)
    fig.suptitle(title or f"{first} vs {second}", fontsize=9)
    for ax in (front, kl_ax):
        ax.grid(alpha=0.3)
    front.legend(fontsize=7)
    return save_figure(fig, out)


def _kl_panel(ax, method: str, points: Sequence[PolicyEvaluation], first: str,
              color: str, shift: float = 0.0, joined: bool = True) -> None:
    """One method's KL by the weight of `first`, moved by `shift` on that axis so that
    methods at the same weight stay apart (pi_ref: a horizontal line); `joined` False draws
    the points alone."""
    kinds = {p.kl_kind for p in points}
    style = "-" if kinds == {KL_ESTIMATE} else (":" if KL_PATH in kinds else "--")
    style = style if joined else "none"
    if not points[0].weights:
        ax.axhline(points[0].kl, color=color, linestyle=":", alpha=0.7, label=method)
        return
    ax.errorbar([p.weights.get(first, 0.0) + shift for p in points], [p.kl for p in points],
                yerr=[p.kl_se for p in points], color=color, linestyle=style, marker="o",
                capsize=2, markersize=4, label=method)


def plot_iterations(rows: Sequence[Mapping], out: str | Path) -> Path:
    """Reward and KL per iteration for each objective (the improvement of Theorem 1)."""
    objectives = sorted({r["objective"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for name in objectives:
        mine = sorted((r for r in rows if r["objective"] == name), key=lambda r: r["iteration"])
        its = [r["iteration"] for r in mine]
        axes[0].errorbar(its, [r["mavis_reward"] for r in mine], marker="o", capsize=3,
                         yerr=[r.get("mavis_reward_se") or 0.0 for r in mine],
                         label=f"{name} MAVIS")
        axes[0].axhline(mine[0]["reference_reward"], linestyle=":", alpha=0.5)
        axes[1].errorbar(its, [r["mavis_kl"] for r in mine], marker="o", capsize=3,
                         yerr=[r.get("mavis_kl_se") or 0.0 for r in mine], label=name)
    for ax in axes:  # iterations are whole numbers
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("mean held-out reward (dotted: pi_ref)")
    axes[1].set_xlabel("iteration")
    axes[1].set_ylabel("KL(pi || pi_ref), eq. 7")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, out)


def save_figure(fig, out: str | Path) -> Path:
    """Save beside `out`, then rename: a reader never sees half a picture."""
    out = Path(out)
    fig.tight_layout()
    try:
        with atomic_path(out) as temp:
            fig.savefig(temp, dpi=120, format=out.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return out
