"""Peak memory of ``vila2 dedup`` (images, captions, both) from 10k to 100k images (vila2-dedup).

::

    python benchmarks/dedup_memory.py [--sizes 10000,100000] [--work DIR]

For each size it writes a dataset of embedded-world scenes (64 px PNGs, shards of 1,000) in
which one image in ten is a Pillow-made near-duplicate of another (resized, recompressed,
cropped, brightened), with a caption layer; then runs the deduplication — ``--images``,
``--captions caption``, and both — each in a fresh process, and reads its peak resident memory
(``wait4``'s ``ru_maxrss``). It also measures the floor — a process that imports the same
libraries and reads one sample — and prints, per mode, the ratio of peaks between the largest
and the smallest size. Images are streamed shard by shard, so what grows is the index: about
1,080 bytes per image (the hash, five crop hashes, the 8x8 and 16x16 thumbnails and the colour
signature), a 512-byte MinHash signature per caption, and the ids.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD_DEDUP = """
import json, sys
from vila2_dedup.dedup import dedup
mode = sys.argv[2]
report = dedup(sys.argv[1], "dedup-bench-" + mode, images=mode != "captions",
               captions=None if mode == "images" else "caption", log=lambda line: None)
print(json.dumps(report.to_dict()))
"""
MODES = ("images", "captions", "both")
CHILD_FLOOR = """
import sys
import numpy, imagehash, datasketch, pyarrow.parquet
from vila2.data import Dataset
from vila2_dedup import dedup, images, captions
ds = Dataset.open(sys.argv[1])
next(ds.iter_samples())
"""


def make_dataset(path: Path, n: int, seed: int = 0) -> None:
    """``n`` images: 90% distinct world scenes, 10% near-duplicates of them; caption layer
    ``caption`` (copies carry an edited caption)."""
    from vila2_dedup.benchmark import TRANSFORMS, edit_caption, make_copy

    from vila2.data import Dataset
    from vila2.world.render import png_bytes, render
    from vila2.world.scene import sample_scene

    if (path / "manifest.json").is_file() and Dataset.open(path).num_samples == n:
        return
    rng = random.Random(seed)
    texts: dict[str, str] = {}
    ds = Dataset.create(path)
    with ds.writer(shard_size=1000, source="dedup memory benchmark") as writer:
        for i in range(n):
            if i % 10 == 9:  # a copy of an earlier scene, in this shard or an earlier one
                j = rng.randrange(0, max(1, i - i // 10))
                scene = sample_scene(seed * 1_000_003 + j)
                data, w, h = make_copy(render(scene), TRANSFORMS[i % len(TRANSFORMS)], rng)
                texts[f"{i:07d}"] = edit_caption(_caption(scene), rng)
            else:
                scene = sample_scene(seed * 1_000_003 + i)
                data, w, h = png_bytes(render(scene)), 64, 64
                texts[f"{i:07d}"] = _caption(scene)
            writer.add(f"{i:07d}", data, w, h)
    layer = ds.create_layer("caption", "caption", producer="dedup memory benchmark")
    for shard in layer.pending_shards():
        layer.write_shard(shard, [{"id": i, "text": texts[i]} for i in ds.shard_ids(shard)])


def _caption(scene: object) -> str:
    objects = getattr(scene, "objects", [])
    words = [f"a {o.size} {o.color} {o.shape}" for o in objects]
    return f"{', '.join(words)} on a {getattr(scene, 'background', 'plain')} background"


def peak_rss_mb(code: str, *args: str) -> tuple[float, str, float]:
    """Run ``python -c code args`` and return its peak RSS (MB), stdout and wall seconds."""
    started = time.time()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise SystemExit(f"child failed with exit code {proc.returncode}")
    return usage.ru_maxrss / 1024, text, time.time() - started  # Linux: kilobytes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--work", type=Path, default=None, help="keep the datasets here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="dedup-memory-"))
    rows = []
    for n in sizes:
        path = work / f"n{n}"
        started = time.time()
        make_dataset(path, n)
        made = time.time() - started
        floor, _, _ = peak_rss_mb(CHILD_FLOOR, str(path))
        for mode in MODES:
            peak, out, seconds = peak_rss_mb(CHILD_DEDUP, str(path), mode)
            report = json.loads(out.strip().splitlines()[-1])
            rows.append({"images": n, "mode": mode, "peak_mb": round(peak, 1),
                         "floor_mb": round(floor, 1), "above_floor_mb": round(peak - floor, 1),
                         "index_mb": round(report["index_bytes"] / 2**20, 1),
                         "dedup_seconds": round(seconds, 1), "dataset_seconds": round(made, 1),
                         "dropped": report["dropped_by_image"] + report["dropped_by_caption"]})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| images | mode | peak RSS (MB) | import floor (MB) | above floor (MB) | index (MB) | dedup (s) | dropped |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['images']:,} | {r['mode']} | {r['peak_mb']} | {r['floor_mb']} | "
              f"{r['above_floor_mb']} | {r['index_mb']} | {r['dedup_seconds']} | {r['dropped']} |")
    if len(sizes) > 1:
        print()
        for mode in MODES:
            first = next(r for r in rows if r["mode"] == mode and r["images"] == sizes[0])
            last = next(r for r in rows if r["mode"] == mode and r["images"] == sizes[-1])
            print(f"peak ratio {mode}: {last['images']:,} / {first['images']:,} images = "
                  f"{last['peak_mb'] / first['peak_mb']:.2f} (corpus ×{last['images'] / first['images']:.0f}); "
                  f"above the floor {last['above_floor_mb']} / {first['above_floor_mb']} MB")


if __name__ == "__main__":
    main()
