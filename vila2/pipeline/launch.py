"""A step's heavy work on several processes of this machine (``recipe.processes``).

A run's steps are ordered by one process; when the recipe asks for ``processes: N``, each
training step and each recaption step of the built-in executor starts ``accelerate launch
--multi_gpu --num_processes N`` on this module, which runs the same library call on every rank:
training is DDP (gloo on CPU, NCCL on GPUs) and captioning is sharded by rank — the code paths
``accelerate launch -m vila2 ...`` takes. The effective batch stays the recipe's: each training
rank gets ``batch_size / N``. A caption rank writes its own counts beside the spec
(``caption-summary.rank<i>.json``) for the run's summary; a specialist's clean-up filter, a
function, travels by the specialist's name and each rank takes it from its own plugins.

Run directly, it is the rank side: ``python -m vila2.pipeline.launch train|caption SPEC.json``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vila2.errors import PipelineError

KINDS = ("train", "caption")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch(kind: str, spec: dict[str, Any], *, processes: int, folder: Path, threads: int | None = None,
           plugin_files: Sequence[str] = ()) -> None:
    """Run ``kind`` (``train``: ``TrainConfig`` fields; ``caption``: ``caption_dataset``
    arguments) on ``processes`` ranks; its output streams into this process's log."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{kind}-launch.json"
    file.write_text(json.dumps({"spec": spec, "threads": threads, "plugins": list(plugin_files)}, indent=1))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
               "--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
               "-m", "vila2.pipeline.launch", kind, str(file)]
    # tiny models: one thread per rank beats ranks fighting over cores
    env = {**os.environ, "OMP_NUM_THREADS": str(threads or 1)}
    done = subprocess.run(command, env=env, check=False)
    if done.returncode != 0:
        raise PipelineError(f"{kind} on {processes} processes failed (exit {done.returncode}); "
                            "the ranks' messages are above")


def specialist_clean_filter(host: Any, name: str) -> Any:
    """The clean-up filter (:meth:`vila2.Specialist.clean_filter`) of specialist ``name`` as
    ``host`` has it: the run's process and each rank look it up the same way."""
    found = host.specialists().get(name)
    cleaned = None if found is None else found.clean_filter()
    if cleaned is None:
        raise PipelineError(f"specialist {name!r} is not installed here or has no clean_answer or check_answer to "
                            "filter its captions with (processes started by a step load installed plugins and "
                            "the run's plugin files)")
    return cleaned


def main(argv: Sequence[str]) -> None:
    """The rank side: read the spec and make the same library call as a single process would."""
    kind, file = argv
    payload = json.loads(Path(file).read_text())
    if payload.get("threads"):
        import torch

        torch.set_num_threads(int(payload["threads"]))
    spec = payload["spec"]
    if payload.get("plugins"):
        from vila2.plugins import get_host

        for plugin in payload["plugins"]:
            get_host().load_file(plugin)
    if kind == "train":
        from vila2.training.trainer import TrainConfig, train

        train(TrainConfig(**spec))
    elif kind == "caption":
        from accelerate import PartialState

        from vila2.captioning.engine import caption_dataset
        from vila2.pipeline.steps import write_json

        specialist = spec.pop("clean_with", None)
        if specialist:  # a function: each rank takes it from its own plugins, by name
            from vila2.plugins import get_host

            spec["filters"] = [*spec["filters"], specialist_clean_filter(get_host(), specialist)]
        summary = caption_dataset(**spec)
        # the run sums the ranks' own counts (how many each captioned, and in how long)
        write_json(Path(file).parent / f"caption-summary.rank{PartialState().process_index}.json",
                   {"new": summary.new, "seconds": summary.seconds})
    else:
        raise SystemExit(f"unknown kind {kind!r}; expected one of {KINDS}")


if __name__ == "__main__":
    main(sys.argv[1:])
