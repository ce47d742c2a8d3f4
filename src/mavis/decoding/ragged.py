"""Rows whose candidate counts differ (a nucleus of its own per row): score them in a few groups
of similar width rather than padding every row to the widest.

A batched value pass reads `rows x width` candidate tokens; with `top_p` or `min_p` one row may
keep 2 candidates and another 30, and padding the first to 30 costs as much as scoring them.
`width_groups` splits the rows (sorted by width) into consecutive groups, each padded only to
its own widest row, choosing the split that reads the fewest tokens once every extra group is
charged a fixed overhead (another forward, a copy of its rows' caches). Pure: no model here.
"""

from __future__ import annotations

from collections.abc import Sequence

# What one more forward costs, in candidate tokens (its launch, and copying its rows' caches).
GROUP_OVERHEAD_TOKENS = 24
MAX_GROUPS = 4


def width_groups(widths: Sequence[int], overhead: int = GROUP_OVERHEAD_TOKENS,
                 max_groups: int = MAX_GROUPS) -> list[tuple[list[int], int]]:
    """(rows, width) per group: every row once, each group as wide as its widest row, the
    split with the fewest tokens read plus `overhead` per group beyond the first (a dynamic
    programme over the rows sorted by width). Equal widths give one group."""
    if not widths:
        return []
    order = sorted(range(len(widths)), key=lambda row: widths[row])
    sorted_widths = [widths[row] for row in order]
    count = len(order)
    # best[g][j]: the least cost of the first j sorted rows in g groups, and where its last began
    inf = float("inf")
    best = [[(inf, 0)] * (count + 1) for _ in range(max_groups + 1)]
    best[0][0] = (0.0, 0)
    for groups in range(1, max_groups + 1):
        for end in range(1, count + 1):
            best[groups][end] = min(
                ((best[groups - 1][start][0] + (end - start) * sorted_widths[end - 1]
                  + (overhead if groups > 1 else 0), start)
                 for start in range(groups - 1, end) if best[groups - 1][start][0] < inf),
                default=(inf, 0))
    groups = min(range(1, max_groups + 1), key=lambda g: (best[g][count][0], g))
    split: list[tuple[list[int], int]] = []
    end = count
    while groups:
        start = best[groups][end][1]
        split.append((sorted(order[start:end]), sorted_widths[end - 1]))
        end, groups = start, groups - 1
    return split[::-1]
