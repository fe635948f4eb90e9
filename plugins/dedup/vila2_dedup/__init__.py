"""vila2-dedup: near-duplicate images and captions across a whole vila2 dataset.

Installed, it adds the ``vila2 dedup`` sub-command (through the ``register_commands`` hook)::

    vila2 dedup DATASET --out-layer NAME [--images] [--captions LAYER] [--radius R] [--threshold T]

which writes a caption layer where every near-duplicate has ``kept = false`` and names, in its
row's meta, the id it duplicates (``duplicate_of``). Nothing heavy is imported until the
command runs.
"""

from __future__ import annotations

from typing import Any

import vila2

__version__ = "0.1.0"


@vila2.hookimpl
def register_commands(cli: Any) -> None:
    """Add ``vila2 dedup``."""
    from vila2_dedup.command import command

    cli.add_command(command, "dedup")
