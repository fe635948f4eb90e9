"""vila2-ray without a cluster: the package, its registration, and the settings it refuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import vila2_ray
from vila2_ray.executor import DEFAULTS, _pool, run_ray

from vila2.errors import CaptionError


def test_vila2_plugins_lists_the_ray_executor() -> None:
    env = {**os.environ, "VILA2_LOAD_PLUGINS": "vila2_ray"}
    env.pop("VILA2_DISABLE_PLUGINS", None)
    done = subprocess.run([sys.executable, "-m", "vila2", "plugins", "--json"], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    listed = {p["name"]: p for p in json.loads(done.stdout)}
    assert listed["vila2_ray"]["status"] == "loaded", listed["vila2_ray"]["reason"]
    assert listed["vila2_ray"]["distribution"] == "vila2-ray"
    assert listed["vila2_ray"]["version"] == vila2_ray.__version__
    assert listed["vila2_ray"]["components"] == {"executor": ["ray"]}
    assert listed["vila2_ray"]["hooks"] == ["register_executors"]


def test_registers_the_ray_executor_next_to_the_builtin(fresh_host, plugin_registered) -> None:
    plugin_registered(vila2_ray)
    executors = fresh_host.executors()
    assert set(executors) == {"local", "ray"}
    assert executors["ray"].plugin == "vila2_ray" and not executors["ray"].in_process
    assert executors["local"].in_process
    assert dict(executors["ray"].settings) == DEFAULTS


def test_unknown_settings_are_refused_before_anything_runs(tmp_path, fresh_host, plugin_registered) -> None:
    from test_ray_cluster import make_dataset

    from vila2.captioning.engine import caption_dataset

    plugin_registered(vila2_ray)
    ds = make_dataset(tmp_path / "ds", n=2, shard_size=2)
    with pytest.raises(ValueError, match=r"executor 'ray' \(plugin 'vila2_ray'\) has no setting adress; "
                                         r"its settings: actors, address"):
        caption_dataset(ds, model=None, layer="x", executor="ray", executor_settings={"adress": "h:1"})
    with pytest.raises(ValueError, match=r"executor 'local'.*no setting address; its settings: none"):
        caption_dataset(ds, model=None, layer="x", executor_settings={"address": "h:1"})
    assert ds.layers() == []


class FakeRay:
    """What ``_pool`` reads of ray: the cluster's resources and the pool strategy."""

    def __init__(self, **resources: float) -> None:
        self.resources = resources
        self.data = SimpleNamespace(ActorPoolStrategy=lambda **kw: kw)

    def cluster_resources(self) -> dict[str, float]:
        return self.resources


def test_the_actor_pool_fits_the_cluster_and_the_shards() -> None:
    pool, gpus, cpus = _pool(FakeRay(CPU=16, GPU=4), DEFAULTS, shards=100)
    assert pool == {"size": 4, "max_tasks_in_flight_per_actor": 1} and gpus == 1 and cpus == 1
    pool, gpus, _ = _pool(FakeRay(CPU=16), DEFAULTS, shards=3)
    assert pool["size"] == 3 and gpus == 0  # never more actors than shards
    pool, _, _ = _pool(FakeRay(CPU=16, GPU=8), {**DEFAULTS, "num_gpus": 2}, shards=100)
    assert pool["size"] == 4
    pool, _, _ = _pool(FakeRay(CPU=2), {**DEFAULTS, "actors": [1, 32]}, shards=10)
    assert pool == {"min_size": 1, "max_size": 10, "max_tasks_in_flight_per_actor": 2}
    for bad in (0, [3, 1], "many", True):
        with pytest.raises(ValueError, match="actors must be"):
            _pool(FakeRay(CPU=2), {**DEFAULTS, "actors": bad}, shards=10)


def test_refuses_to_run_under_accelerate_launch(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(CaptionError, match="runs from one process"):
        run_ray(SimpleNamespace(), DEFAULTS)
