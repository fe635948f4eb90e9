"""Ingest throughput (samples/s) and peak memory at 10k and 100k samples.

Writes a synthetic img2dataset-style WebDataset corpus (tiny JPEGs + captions + JSON), ingests
each size in its own subprocess so peak RSS is per size, and prints the ratio of peak RSS at
the largest size to the smallest: ingest streams shard by shard, so it should be about 1.

    python benchmarks/ingest_throughput.py [--sizes 10000,100000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

PER_TAR = 10_000


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_corpus(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` samples in tars of 10k: 32×32 JPEGs drawn from a pool of 512, caption, metadata."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(512):
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(out, "JPEG")
        pool.append(out.getvalue())
    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, n, PER_TAR):
        with tarfile.open(folder / f"{start // PER_TAR:05d}.tar", "w") as tar:
            for i in range(start, min(start + PER_TAR, n)):
                key = f"{i:09d}"
                _add(tar, f"{key}.jpg", pool[i % len(pool)])
                _add(tar, f"{key}.txt", f"synthetic caption number {i}".encode())
                _add(tar, f"{key}.json", json.dumps({"key": key, "url": f"http://example/{key}.jpg"}).encode())
    return folder


def child(src: str, out: str) -> None:
    """Ingest ``src`` into ``out`` and print one JSON line of measurements."""
    from vila2.data import ingest

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    report = ingest(src, out, format="webdataset", progress=False)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"samples": report.kept, "rejected": report.rejected, "seconds": seconds,
                      "samples_per_s": report.kept / seconds, "peak_rss_mib": peak / 1024,
                      "rss_after_imports_mib": baseline / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--child", nargs=2, metavar=("SRC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        results = []
        for n in sizes:
            made = time.perf_counter()
            src = make_corpus(Path(tmp) / f"src-{n}", n)
            print(f"corpus of {n} samples written in {time.perf_counter() - made:.1f} s", flush=True)
            line = subprocess.run(
                [sys.executable, __file__, "--child", str(src), str(Path(tmp) / f"out-{n}")],
                check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]
            result = json.loads(line)
            results.append(result)
            print(f"{n:>8} samples: {result['samples_per_s']:8.0f} samples/s, "
                  f"{result['seconds']:6.1f} s, peak RSS {result['peak_rss_mib']:6.1f} MiB "
                  f"(after imports {result['rss_after_imports_mib']:.1f} MiB)", flush=True)
        if len(results) > 1:
            ratio = results[-1]["peak_rss_mib"] / results[0]["peak_rss_mib"]
            print(f"peak RSS ratio {sizes[-1]}/{sizes[0]} samples: {ratio:.2f} (flat memory ~ 1)")


if __name__ == "__main__":
    main()
