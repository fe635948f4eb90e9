"""The embedded synthetic world (docs/DEMO.md): images with a ground-truth scene graph, the datasets
the VILA² loop trains on, and held-out benchmarks, all built locally from a seed.

::

    from vila2.world import write_world, world_texts

    world = write_world("out/world", seed=0, size="tiny")
    texts = list(world_texts(world))
"""

from __future__ import annotations

from vila2.world.sizes import SIZES, WorldSize, resolve_size
from vila2.world.texts import world_texts
from vila2.world.write import write_world

__all__ = ["SIZES", "WorldSize", "resolve_size", "world_texts", "write_world"]
