"""Balanced objectives: each head of a shared value model counts alike in the loss whatever its
reward's scale (a 1-10 rating would otherwise swamp a 0-1 probability)."""

import pytest
import torch

from mavis.training.loss import balance_weights, masked_mse, sibling_difference_mse


def test_balance_weights_equalise_the_objectives_expected_errors():
    weights = balance_weights([0.01, 0.25, 4.0])
    mean = (0.01 + 0.25 + 4.0) / 3
    assert weights == pytest.approx([mean / 0.01, mean / 0.25, mean / 4.0])
    # a constant predictor's weighted error is then the same for every objective
    assert [w * v for w, v in zip(weights, [0.01, 0.25, 4.0], strict=True)] == pytest.approx(
        [mean] * 3)
    assert balance_weights([0.3]) == [1.0]  # one objective: the loss is unchanged
    assert balance_weights([0.0, float("nan")]) == [1.0, 1.0]


def test_weighted_losses():
    predicted = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    targets = torch.tensor([[1.0, 2.0], [1.0, float("nan")]])
    assert float(masked_mse(predicted, targets)) == pytest.approx((1 + 4 + 0) / 3)
    weights = torch.tensor([2.0, 0.5])
    assert float(masked_mse(predicted, targets, weights=weights)) == pytest.approx(
        (2 * 1 + 0.5 * 4 + 0) / 3)
    parent = torch.tensor([0, 0])
    plain = sibling_difference_mse(predicted, targets, parent)
    weighted = sibling_difference_mse(predicted, targets, parent, weights=weights)
    assert float(weighted) == pytest.approx(2 * float(plain))  # only the first column pairs


def test_training_subsets_are_nested_and_refused_beyond_the_file():
    """A learning curve's training sets: seeded, nested, the validation prompts unchanged."""
    import numpy as np

    from mavis.errors import MavisError
    from mavis.training.samples import nested_subset

    prompts = np.arange(3, 103)
    small, large = nested_subset(prompts, 20, 0), nested_subset(prompts, 40, 0)
    assert len(small) == 20 and set(small) <= set(large) <= set(prompts)
    assert list(small) == sorted(small)
    assert not set(small) <= set(range(3, 23))  # not just the first ones (set by set)
    with pytest.raises(MavisError, match="has 100 training prompts"):
        nested_subset(prompts, 101, 0)
