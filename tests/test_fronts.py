"""Pareto dominance and hypervolume on hand-made points (2-D, 3-D, 4-D)."""

import itertools
import random

import pytest

from mavis.errors import MavisError
from mavis.evaluation.fronts import dominated, dominates, hypervolume, pareto_indices


def test_dominance_maximises_every_coordinate():
    assert dominates((2, 2), (1, 2)) and not dominates((1, 2), (2, 2))
    assert not dominates((1, 1), (1, 1))  # equal points do not dominate each other
    assert not dominates((3, 0), (0, 3))


def test_dominated_and_front_keep_duplicates_and_input_order():
    points = [(0.0, 2.0), (1.0, 1.0), (1.0, 1.0), (0.5, 0.5), (2.0, 0.0), (0.0, 1.0)]
    assert dominated(points) == [False, False, False, True, False, True]
    assert pareto_indices(points) == [0, 1, 2, 4]


def test_front_in_three_dimensions():
    points = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0.4, 0.4, 0)]
    assert pareto_indices(points) == [0, 1, 2, 3]


def test_empty_input():
    assert dominated([]) == [] and pareto_indices([]) == []
    assert hypervolume([], (0.0, 0.0)) == 0.0


def test_hypervolume_2d_staircase():
    front = [(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)]
    assert hypervolume(front, (0.0, 0.0)) == pytest.approx(6.0)
    # Order, dominated points and duplicates change nothing.
    noisy = [(2.0, 2.0), (1.0, 1.0), (3.0, 1.0), (2.0, 2.0), (1.0, 3.0), (0.5, 0.5)]
    assert hypervolume(noisy, (0.0, 0.0)) == pytest.approx(6.0)
    # A point outside the reference box adds nothing; one inside adds its new strip.
    assert hypervolume(front + [(-1.0, 5.0)], (0.0, 0.0)) == pytest.approx(6.0)
    assert hypervolume(front + [(0.5, 4.0)], (0.0, 0.0)) == pytest.approx(6.5)
    # Moving the reference: boxes are measured from it; points on its boundary have none.
    assert hypervolume(front, (1.0, 1.0)) == pytest.approx(1.0)
    assert hypervolume(front, (5.0, 5.0)) == 0.0


def test_hypervolume_3d_inclusion_exclusion():
    assert hypervolume([(1, 2, 3)], (0, 0, 0)) == pytest.approx(6.0)
    assert hypervolume([(2, 1, 1), (1, 2, 1)], (0, 0, 0)) == pytest.approx(3.0)
    # Three boxes of volume 2 overlapping pairwise and all three in the unit cube: 6 - 3 + 1.
    points = [(2, 1, 1), (1, 2, 1), (1, 1, 2)]
    assert hypervolume(points + points[:1], (0, 0, 0)) == pytest.approx(4.0)
    assert hypervolume(points, (1, 0, 0)) == pytest.approx(1.0)  # only (2,1,1) reaches past x=1
    assert hypervolume(points + [(3, -1, 3)], (0, 0, 0)) == pytest.approx(4.0)


def _grid_volume(points, reference, size):
    """Brute force on integer points: count unit cells whose upper corner some point reaches."""
    count = 0
    for cell in itertools.product(range(size), repeat=len(reference)):
        upper = [reference[d] + cell[d] + 1 for d in range(len(reference))]
        if any(all(p[d] >= upper[d] for d in range(len(upper))) for p in points):
            count += 1
    return count


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_hypervolume_matches_brute_force_on_random_integer_points(dims):
    rng = random.Random(dims)
    for _ in range(5):
        points = [tuple(rng.randint(-1, 5) for _ in range(dims)) for _ in range(rng.randint(1, 8))]
        reference = (0,) * dims
        assert hypervolume(points, reference) == pytest.approx(
            _grid_volume(points, reference, 5))


def test_bad_input_is_a_clear_error():
    with pytest.raises(MavisError, match="same number of objectives"):
        hypervolume([(1.0, 2.0)], (0.0, 0.0, 0.0))
    with pytest.raises(MavisError, match="same number of objectives"):
        dominated([(1.0, 2.0), (1.0,)])
    with pytest.raises(MavisError, match="not finite"):
        hypervolume([(float("nan"), 1.0)], (0.0, 0.0))
