"""Which rows share a value pass when their candidate counts differ (pure; no model)."""

import itertools
import random

from mavis.decoding.ragged import width_groups


def cost(groups, overhead):
    return sum(len(rows) * width for rows, width in groups) + overhead * (len(groups) - 1)


def brute_force(widths, overhead, max_groups):
    """The least cost over every split of the rows, sorted by width, into consecutive groups."""
    ordered = sorted(widths)
    best = float("inf")
    for count in range(1, min(max_groups, len(ordered)) + 1):
        for cuts in itertools.combinations(range(1, len(ordered)), count - 1):
            bounds = [0, *cuts, len(ordered)]
            best = min(best, sum((b - a) * ordered[b - 1] for a, b in itertools.pairwise(bounds))
                       + overhead * (count - 1))
    return best


def test_every_row_once_each_group_as_wide_as_its_widest_row_and_the_least_cost():
    rng = random.Random(0)
    for _ in range(200):
        widths = [rng.choice([1, 2, 3, 5, 8, 13, 21, 40]) for _ in range(rng.randint(1, 9))]
        overhead, max_groups = rng.choice([0, 8, 24]), rng.choice([1, 2, 4])
        groups = width_groups(widths, overhead, max_groups)
        rows = sorted(r for group, _ in groups for r in group)
        assert rows == list(range(len(widths)))
        assert len(groups) <= max_groups
        for group, width in groups:
            assert width == max(widths[r] for r in group)
        assert cost(groups, overhead) == brute_force(widths, overhead, max_groups)


def test_equal_widths_share_one_pass_and_a_few_wide_rows_get_their_own():
    assert width_groups([40] * 16) == [(list(range(16)), 40)]
    widths = [2] * 14 + [30, 30]
    groups = width_groups(widths)
    assert groups == [(list(range(14)), 2), ([14, 15], 30)]
    assert width_groups([]) == []
