"""The ``ray`` executor: a caption job's pending shards through a Ray Data actor pool.

::

    shards ──▶ ray.data.from_items([{"shard": "00000"}, ...])   one block per shard
           ──▶ .map_batches(ShardCaptioner, batch_size=1,      one shard per call
                            compute=ActorPoolStrategy(1..N))   one loaded captioner per actor
           ──▶ each call: job.caption_shard(shard)              caption, filter, write the layer
                                                                shard (rename + .done marker)
           ──▶ the driver counts {"shard", "captioned", "samples"} rows as they finish

The driver (``vila2 caption --executor ray`` or a recipe step) has already created the layer
with its provenance; the actors only add finished shards. Every shard is captioned alone (own
seed, fresh filter state), so the layer equals a single-process run's, and a killed job's rerun
skips the shards whose markers exist. The dataset folder and the model must be readable (and
the dataset writable) at the same path on every node: a shared file system.

Ray is imported only when the executor runs, so ``vila2 --help`` stays fast.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from vila2.errors import CaptionError, Vila2Error

#: the executor's settings and their defaults (``--address``, ``--executor-set KEY=VALUE``, or a
#: recipe's ``self_augment.executor_settings``)
DEFAULTS: dict[str, Any] = {
    # the cluster: host:6379, ray://host:10001 or "auto"; None: RAY_ADDRESS, else a running local
    # cluster, else a new one in this process
    "address": None,
    # the most actors (one captioner each); None: as many as the cluster's GPUs (CPUs without
    # GPUs) allow; never more than the pending shards. [min, max] sets both ends of the pool.
    "actors": None,
    # per actor; None: 1 when the cluster has GPUs, else 0
    "num_gpus": None,
    "num_cpus": 1,
    # Ray's runtime_env for the job (e.g. {"pip": ["vila2", "vila2-ray"]}); None: the nodes'
    # own environment
    "runtime_env": None,
}


class ShardCaptioner:
    """A Ray Data actor: loads the captioner on its first shard, then captions one shard per call.

    A failure comes back as a row (the pickled exception) rather than as a Ray error, so the
    driver raises the very error, with the very message, that the built-in engine raises."""

    def __init__(self, job: Any) -> None:
        self.job = job
        self.caption: Any = None

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[Any]]:
        import ray

        out: dict[str, list[Any]] = {"shard": [], "captioned": [], "samples": [], "error": []}
        for shard in (str(s) for s in batch["shard"]):
            captioned, error = 0, b""
            try:
                if self.caption is None:
                    self.caption = self.job.load()
                captioned = self.job.caption_shard(shard, self.caption)
            except Exception as exc:
                error = _pickled(ray, exc, shard)
            out["shard"].append(shard)
            out["captioned"].append(captioned)
            out["samples"].append(self.job.rows[shard])
            out["error"].append(error)
        return out


def _pickled(ray: Any, exc: Exception, shard: str) -> bytes:
    try:
        return bytes(ray.cloudpickle.dumps(exc))
    except Exception:  # an exception that does not pickle still has a message
        return bytes(ray.cloudpickle.dumps(CaptionError(f"shard {shard}: {type(exc).__name__}: {exc}")))


def run_ray(job: Any, settings: Mapping[str, Any]) -> tuple[int, float]:
    """Caption every pending shard of ``job`` (a ``vila2.captioning.engine.CaptionJob``) on a
    Ray cluster; returns ``(samples captioned, seconds)``.

    Runs from one process: under ``accelerate launch`` every rank would send the same shards."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise CaptionError("executor 'ray' runs from one process (its actors take every shard): "
                           "run `vila2 caption --executor ray` without accelerate launch")
    shards = job.pending()
    if not shards:
        return 0, 0.0
    import ray

    from vila2.progress import progress_bar

    started_here = _connect(ray, settings)
    try:
        _ship_plugins_by_value(ray, job)
        compute, num_gpus, num_cpus = _pool(ray, settings, len(shards))
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # one bar: ours, in samples
        data = ray.data.from_items([{"shard": shard} for shard in shards], override_num_blocks=len(shards))
        done = data.map_batches(ShardCaptioner, fn_constructor_kwargs={"job": job}, batch_size=1,
                                compute=compute, num_gpus=num_gpus, num_cpus=num_cpus)
        bar = progress_bar(total=job.samples(shards), unit="img", desc=f"caption {job.layer} [ray]",
                           disable=not job.progress, dynamic_ncols=True)
        started, new = time.perf_counter(), 0
        rows = done.iter_rows()
        try:
            for row in rows:
                if row["error"]:
                    raise _unpickled(ray, row["error"], job.layer, row["shard"])
                new += int(row["captioned"])
                bar.update(int(row["samples"]))
        finally:
            bar.close()
            close = getattr(rows, "close", None)
            if close is not None:
                close()  # stops the pipeline: an error leaves the other actors' shards unstarted
        return new, time.perf_counter() - started
    except Vila2Error:
        raise
    except Exception as exc:
        raise CaptionError(f"executor 'ray' failed on layer {job.layer!r} (finished shards are "
                           f"saved; a rerun resumes): {type(exc).__name__}: {exc}") from exc
    finally:
        if started_here:
            ray.shutdown()


def _unpickled(ray: Any, data: bytes, layer: str, shard: str) -> Exception:
    """An actor's error for the driver: a vila2 error as it was raised, anything else named."""
    exc = ray.cloudpickle.loads(data)
    if isinstance(exc, Vila2Error):
        return exc
    return CaptionError(f"executor 'ray' failed on layer {layer!r} shard {shard} (finished shards "
                        f"are saved; a rerun resumes): {type(exc).__name__}: {exc}")


def _connect(ray: Any, settings: Mapping[str, Any]) -> bool:
    """Join the cluster (or the one this process already joined); True when this call did."""
    if ray.is_initialized():
        return False
    import logging

    ray.init(address=settings.get("address"), runtime_env=settings.get("runtime_env"),
             logging_level=logging.WARNING, log_to_driver=True)
    return True


def _pool(ray: Any, settings: Mapping[str, Any], shards: int) -> tuple[Any, float, float]:
    """``(ActorPoolStrategy, GPUs per actor, CPUs per actor)`` for ``shards`` pending shards.

    A number of actors (or the default, what the cluster holds now) is a fixed pool in which an
    actor takes its next shard only when it has finished one, so a slow node holds up one shard,
    never a queue. ``[min, max]`` is an autoscaling pool (Ray Data adds actors while shards wait,
    up to ``max``; each actor then has up to two shards in hand, which its growth needs)."""
    resources = ray.cluster_resources()
    num_gpus = settings.get("num_gpus")
    if num_gpus is None:
        num_gpus = 1 if resources.get("GPU", 0) >= 1 else 0
    num_cpus = float(settings.get("num_cpus") or 0)
    actors = settings.get("actors")
    if actors is None:
        if num_gpus:
            fit = resources.get("GPU", 0) // num_gpus
        else:
            fit = resources.get("CPU", 1) // num_cpus if num_cpus else resources.get("CPU", 1)
        actors = max(1, int(fit))
    if isinstance(actors, int) and not isinstance(actors, bool) and actors >= 1:
        size = min(actors, shards)
        strategy = ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1)
    elif (isinstance(actors, (list, tuple)) and len(actors) == 2
          and all(isinstance(a, int) and not isinstance(a, bool) for a in actors) and 1 <= actors[0] <= actors[1]):
        high = min(actors[1], shards)
        strategy = ray.data.ActorPoolStrategy(min_size=min(actors[0], high), max_size=high,
                                              max_tasks_in_flight_per_actor=2)
    else:
        raise ValueError(f"executor 'ray': actors must be a number >= 1 or [min, max], got {actors!r}")
    return strategy, float(num_gpus), num_cpus


def _ship_plugins_by_value(ray: Any, job: Any) -> None:
    """Send the code of captioners and filters whose modules the actors may not import.

    A one-file plugin (``--plugin FILE``, a recipe's ``plugins:``) is never in ``sys.modules``, so
    cloudpickle sends its code anyway; a plugin object registered from one of the driver's own
    modules (``host.register(obj)``, a script's neighbour) is in ``sys.modules`` but on no other
    node: its module goes by value too."""
    import sys

    from vila2.plugins import get_host

    host = get_host()
    local = {name for name, info in host.infos.items() if info.source in ("file", "object")}
    components = [job.captioner, *(step.filter for step in job.filters)]
    for component in components:
        if component.plugin not in local:
            continue
        for value in vars(component).values():
            module = sys.modules.get(getattr(value, "__module__", "") or "")
            if module is not None and not module.__name__.startswith("vila2."):
                ray.cloudpickle.register_pickle_by_value(module)


__all__ = ["DEFAULTS", "ShardCaptioner", "run_ray"]
