"""Shard names and their assignment to ranks."""

from __future__ import annotations

from collections.abc import Sequence


def shard_name(index: int) -> str:
    """The name of the ``index``-th shard: ``00000``, ``00001``, ..."""
    return f"{index:05d}"


def shard_for_rank(shards: Sequence[str], rank: int, world_size: int) -> list[str]:
    """The shards rank ``rank`` of ``world_size`` works on: shard *i* goes to rank *i* % world_size.

    The split depends only on the shard list, so every rank computes the same one without talking
    to the others, and a rerun with the same world size gives each rank the same shards.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return [shard for i, shard in enumerate(shards) if i % world_size == rank]
