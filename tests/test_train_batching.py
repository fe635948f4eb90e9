"""Length-grouped batches: every example once per epoch, less padding, reproducible order."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vila2.training.batching import LengthGroupedBatches, padding_ratio


@given(lengths=st.lists(st.integers(1, 300), min_size=1, max_size=200), size=st.integers(1, 17),
       grouped=st.booleans(), epoch=st.integers(0, 3))
@settings(max_examples=60, deadline=None)
def test_each_example_once_per_epoch(lengths: list[int], size: int, grouped: bool, epoch: int) -> None:
    sampler = LengthGroupedBatches(lengths, size, seed=1, group_by_length=grouped)
    sampler.epoch = epoch
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(0 < len(b) <= size for b in batches)
    assert len(batches) == len(sampler)


def test_grouping_cuts_padding_and_depends_only_on_seed_and_epoch() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(20, 200) for _ in range(2000)]
    grouped = LengthGroupedBatches(lengths, 16, seed=3)
    plain = LengthGroupedBatches(lengths, 16, seed=3, group_by_length=False)
    assert padding_ratio(lengths, grouped.batches()) < 0.1 < 0.3 < padding_ratio(lengths, plain.batches())
    again = LengthGroupedBatches(lengths, 16, seed=3)
    assert again.batches() == grouped.batches()
    again.epoch = 1
    assert again.batches() != grouped.batches()


def test_drop_last_and_bad_size() -> None:
    sampler = LengthGroupedBatches([5] * 10, 4, drop_last=True)
    assert len(sampler) == 2 and all(len(b) == 4 for b in sampler)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        LengthGroupedBatches([1], 0)
