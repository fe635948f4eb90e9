"""Length-grouped batches: less padding, the same randomness.

Examples are shuffled, cut into "mega-batches" of ``group`` batches, sorted by length inside each
mega-batch and split into batches; the batch order is shuffled again. Batches then hold examples
of similar length (little padding) while an epoch still visits the data in a random order. The
order depends only on ``(seed, epoch)``, so a resumed run sees the same batches.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence


class LengthGroupedBatches:
    """A batch sampler (``DataLoader(batch_sampler=...)``) grouping indices by ``lengths``.

    ``group_by_length=False`` gives plain shuffled batches (the baseline). Set ``epoch`` before
    iterating; there is deliberately no ``set_epoch``, which accelerate would call with its own
    counter (it restarts at 0 in a loader that skips the batches a resumed run has seen).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, seed: int = 0, group: int = 32,
                 group_by_length: bool = True, drop_last: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group = group
        self.group_by_length = group_by_length
        self.drop_last = drop_last
        self.epoch = 0

    def batches(self) -> list[list[int]]:
        """This epoch's batches (lists of example indices)."""
        rng = random.Random(f"{self.seed}:{self.epoch}")
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        size = self.batch_size
        if self.group_by_length:
            mega = size * self.group
            order = [
                i
                for start in range(0, len(order), mega)
                for i in sorted(order[start:start + mega], key=lambda j: -self.lengths[j])
            ]
        batches = [order[i:i + size] for i in range(0, len(order), size)]
        if self.drop_last and batches and len(batches[-1]) < size:
            batches.pop()
        if self.group_by_length:
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)


def padding_ratio(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Fraction of a batch tensor's positions that are padding."""
    real = sum(lengths[i] for b in batches for i in b)
    total = sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
    return 1 - real / total if total else 0.0


__all__ = ["LengthGroupedBatches", "padding_ratio"]
