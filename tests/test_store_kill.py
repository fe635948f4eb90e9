"""A layer writer killed with SIGKILL mid-shard resumes exactly; ranks write one layer at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

from test_store import make

from vila2.data import Dataset

# Writes the layer "slow" one shard at a time. With HANG set, the write of shard 00001 stops
# after its temporary file is complete and before the rename: the parent kills it there.
WRITER = textwrap.dedent("""
    import os, sys, time
    from vila2.data import Dataset, atomic

    path, rank, world = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if os.environ.get("HANG"):
        commit = atomic.commit
        def hanging(tmp, target):
            if target.name == "00001.parquet":
                time.sleep(120)
            commit(tmp, target)
        atomic.commit = hanging
    ds = Dataset.open(path)
    writer = ds.create_layer("slow", "caption", producer="test", settings={"n": 1})
    for shard in writer.pending_shards(rank, world):
        writer.write_shard(shard, [{"id": i, "text": "text of " + i} for i in ds.shard_ids(shard)])
""")


def _run(path: Path, rank: int = 0, world: int = 1, hang: bool = False) -> subprocess.Popen:
    env = {**os.environ, "HANG": "1" if hang else ""}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(rank), str(world)],
                            env=env)


def _wait_for(condition, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_sigkill_mid_layer_then_rerun_writes_every_sample_once(tmp_path: Path) -> None:
    ds = make(tmp_path, n=10, shard_size=3)
    folder = ds.path / "layers" / "slow"
    proc = _run(ds.path, hang=True)
    try:
        _wait_for(lambda: (folder / "00000.done").exists()
                  and list(folder.glob(".00001.parquet.tmp-*")), "shard 00000 done, 00001 mid-write")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    layer = ds.layer("slow")
    assert layer.done_shards() == ["00000"] and not layer.is_complete()
    assert not (folder / "00001.parquet").exists()

    rerun = _run(ds.path)
    assert rerun.wait() == 0
    assert layer.is_complete()
    ids = [row["id"] for row in layer.iter_rows()]
    assert Counter(ids) == Counter(f"s{i}" for i in range(10))
    assert all(n == 1 for n in Counter(ids).values())
    assert [s["slow"] for s in ds.iter_samples(layers=["slow"])] == [
        f"text of s{i}" for i in range(10)]
    assert not list(folder.glob(".*"))  # the killed writer's temp file was cleaned up


def test_two_ranks_write_one_layer_concurrently(tmp_path: Path) -> None:
    ds = make(tmp_path, n=12, shard_size=2)
    procs = [_run(ds.path, rank, 2) for rank in range(2)]
    assert [p.wait() for p in procs] == [0, 0]
    reopened = Dataset.open(ds.path)
    layer = reopened.layer("slow")
    assert layer.is_complete() and len(layer.done_shards()) == 6
    assert len(layer.texts()) == 12
    assert reopened.manifest["layers"] == {"slow": {"kind": "caption", "producer": "test"}}
