"""An ingest killed with SIGKILL mid-shard, then rerun, equals an uninterrupted ingest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from collections import Counter
from pathlib import Path

from test_ingest import _add, bad_images, jpeg

from vila2.data import Dataset, ingest

# Ingests with shards of 4; checking sample "s019" (in the 4th shard) first signals the parent,
# then hangs, so the kill lands with three shards committed and the fourth half-written.
INGEST = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from vila2.data import ingester

    src, out, flag = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    check = ingester.check_image
    def slow(data, max_pixels):
        if data == flag.with_suffix(".jpg").read_bytes():
            flag.write_text("hanging")
            time.sleep(120)
        return check(data, max_pixels)
    ingester.check_image = slow
    ingester.ingest(src, out, shard_size=4, progress=False)
""")


def corpus(folder: Path) -> Path:
    """30 samples in one tar; every third is odd (RGBA: kept) or bad (corrupt, bomb: rejected)."""
    folder.mkdir()
    bad = list(bad_images().values())
    with tarfile.open(folder / "data.tar", "w") as tar:
        for i in range(30):
            _add(tar, f"s{i:03d}.jpg", bad[i % len(bad)] if i % 3 == 2 else jpeg(100 + i))
            _add(tar, f"s{i:03d}.txt", f"caption {i}".encode())
    return folder


def test_sigkill_mid_ingest_then_rerun_equals_clean_ingest(tmp_path: Path) -> None:
    src = corpus(tmp_path / "src")
    flag = tmp_path / "flag"
    flag.with_suffix(".jpg").write_bytes(jpeg(100 + 19))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", INGEST, str(src), str(out), str(flag)])
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "ingest never reached s019"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    interrupted = Dataset.open(out)
    assert len(interrupted.shards()) == 3  # shards of 4 before s019, the 4th one open
    assert not interrupted.manifest["ingest"]["complete"]

    resumed = ingest(src, out, shard_size=4, progress=False)
    clean = ingest(src, tmp_path / "clean", shard_size=4, progress=False)
    assert resumed.resumed and resumed.kept == clean.kept == 24  # 20 good + 4 RGBA normalised
    assert resumed.counts == clean.counts
    ds, reference = Dataset.open(out), Dataset.open(tmp_path / "clean")
    ids = [s["id"] for s in ds.iter_samples()]
    assert Counter(ids).most_common(1)[0][1] == 1
    assert ids == [s["id"] for s in reference.iter_samples()]
    assert ds.layer("original").texts() == reference.layer("original").texts()
    assert (out / "rejects.jsonl").read_text() == (tmp_path / "clean" / "rejects.jsonl").read_text()
    assert not [p for p in out.rglob(".*") if p.name != ".lock"]
