"""vila2-ray: the recaption engine's shards on a Ray cluster.

Installed, it registers (through the ``vila2`` entry point) the ``ray`` executor::

    vila2 caption data/pretrain --model runs/r0/model --layer recap-r1 --executor ray --address HOST:6379

Each pending image shard becomes one row of a Ray Dataset; ``map_batches`` sends the rows to an
autoscaling pool of actors, each holding one loaded captioner (one GPU per actor when the cluster
has GPUs), which caption, filter and write the layer shard exactly as the built-in engine does.
See :mod:`vila2_ray.executor` and the package README.
"""

from __future__ import annotations

from typing import Any

import vila2
from vila2.components import Executor
from vila2_ray.executor import DEFAULTS, run_ray

__version__ = "0.1.0"


@vila2.hookimpl
def register_executors(register: Any) -> None:
    register(Executor(
        "ray", run=run_ray, settings=DEFAULTS,
        description="A Ray Data actor pool on a Ray cluster (--address; one captioner per actor, "
                    "a GPU each when the cluster has them).",
    ))


__all__ = ["DEFAULTS", "__version__", "register_executors", "run_ray"]
