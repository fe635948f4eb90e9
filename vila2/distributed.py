"""The process's place in a multi-process run (``accelerate launch``)."""

from __future__ import annotations

from typing import Any


def process_state() -> Any:
    """accelerate's ``PartialState`` for this process.

    Without a GPU, ``accelerate launch --multi_gpu`` starts its processes through torchrun, and
    only ``cpu=True`` makes them join one gloo process group (the default state would treat each
    process as a lone single-process run, so every rank would do all the work).
    """
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
