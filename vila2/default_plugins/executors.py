"""The built-in ``local`` executor: caption shards in this process.

Under ``accelerate launch`` (or torchrun) every process runs it on its own share of the shards
(shard *i* goes to rank *i* % world size) and they wait for each other at the end; alone, the
process captions every pending shard. Other executors (``vila2-ray``) register the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import vila2
from vila2.components import Executor


def run_local(job: Any, settings: Mapping[str, Any]) -> tuple[int, float]:
    """Caption this rank's pending shards of ``job`` (a ``CaptionJob``) in this process, with the
    captioner the engine already loaded here if it did; returns ``(captioned, seconds)``."""
    from vila2.distributed import process_state

    state = process_state()
    shards = job.pending(state.process_index, state.num_processes)
    new, seconds = 0, 0.0
    if shards:
        ranks = f" [rank {state.process_index} of {state.num_processes}]" if state.num_processes > 1 else ""
        new, seconds = job.run_shards(shards, job.load(), progress=job.progress and state.is_local_main_process,
                                      desc=f"caption {job.layer}{ranks}")
    state.wait_for_everyone()
    return new, seconds


@vila2.hookimpl
def register_executors(register: Any) -> None:
    register(Executor(
        "local", run=run_local, in_process=True,
        description="In this process; under `accelerate launch` each rank captions its own shards.",
    ))
