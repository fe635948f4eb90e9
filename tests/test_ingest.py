"""Ingest from every format, with a corrupt corpus that covers every kind of bad input."""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from vila2.data import Dataset, StoreError, ingest

RNG_SEED = 0


def encode(image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def noise(seed: int, size: int = 16):
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def jpeg(seed: int = 0) -> bytes:
    return encode(noise(seed), "JPEG")


def png(seed: int = 0) -> bytes:
    return encode(noise(seed), "PNG")


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def bomb() -> bytes:
    """A 30000×30000 PNG header with almost no data: decoding it would take 900 MB."""
    header = struct.pack(">IIBBBBB", 30000, 30000, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 10)) + _chunk(b"IEND", b""))


def bad_images() -> dict[str, bytes]:
    """Image bytes of every odd kind, by name."""
    from PIL import Image

    good_png = png(1)
    corrupt = bytearray(good_png)
    corrupt[len(corrupt) // 2] ^= 0xFF
    corrupt[len(corrupt) // 2 + 1] ^= 0xFF
    sixteen = Image.fromarray((np.arange(256).reshape(16, 16) * 250).astype(np.uint16))
    good_jpeg = jpeg(2)
    return {
        "cmyk": encode(noise(3).convert("CMYK"), "JPEG"),
        "palette": encode(noise(4).convert("P"), "PNG"),
        "alpha": encode(noise(5).convert("RGBA"), "PNG"),
        "sixteen": encode(sixteen, "PNG"),
        "truncated": good_jpeg[: len(good_jpeg) - 60],
        "corrupt": bytes(corrupt),
        "empty": b"",
        "text": b"this is not an image\n",
        "bomb": bomb(),
    }


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def corrupt_webdataset(folder: Path) -> Path:
    """Two img2dataset-style tars holding 9 good samples and every kind of bad input."""
    folder.mkdir(parents=True)
    bad = bad_images()
    with tarfile.open(folder / "00000.tar", "w") as tar:
        _add(tar, "000000.jpg", jpeg(10))
        _add(tar, "000000.txt", b"a red square")
        _add(tar, "000000.json", json.dumps({"url": "http://x/0.jpg", "key": "000000"}).encode())
        _add(tar, "000001.png", png(11))
        _add(tar, "000001.txt", "un café".encode())
        for i, name in enumerate(["cmyk", "palette", "alpha", "sixteen"], start=2):
            _add(tar, f"00000{i}.{'jpg' if name == 'cmyk' else 'png'}", bad[name])
            _add(tar, f"00000{i}.txt", f"caption {name}".encode())
        for i, name in enumerate(["truncated", "corrupt", "empty", "text"], start=6):
            _add(tar, f"0000{i:02d}.jpg", bad[name])
            _add(tar, f"0000{i:02d}.txt", b"caption")
        _add(tar, "000010.png", bad["bomb"])
        _add(tar, "000010.txt", b"caption")
    with tarfile.open(folder / "00001.tar", "w") as tar:
        _add(tar, "000011.jpg", jpeg(12))  # no caption
        _add(tar, "000012.jpg", jpeg(13))
        _add(tar, "000012.txt", b"caf\xe9 \xff\xfe")  # Latin-1, not UTF-8
        _add(tar, "000000.jpg", jpeg(14))  # the id of the first sample again
        _add(tar, "000000.txt", b"duplicate")
        _add(tar, "../evil.jpg", jpeg(15))
        _add(tar, "/tmp/absolute.jpg", jpeg(16))
        link = tarfile.TarInfo("link.jpg")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
        _add(tar, "000013.txt", b"caption without image")
        _add(tar, "000013.json", b"{}")
        _add(tar, "000014.jpg", jpeg(17))
        _add(tar, "000014.txt", b"   \n")
    return folder


def rejects(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]


def test_corrupt_webdataset_exact_counts_and_reasons(tmp_path: Path, capsys) -> None:
    src = corrupt_webdataset(tmp_path / "src")
    out = tmp_path / "out"
    report = ingest(src, out, shard_size=4, progress=False)

    assert report.format == "webdataset"
    assert report.kept == 9 and report.shards == 3
    assert report.counts["rejected"] == {
        "corrupt image": 1, "duplicate id": 1, "empty file": 1, "image too large": 1,
        "missing image": 1, "not a regular file": 1, "not an image": 1, "truncated image": 1,
        "unsafe member name": 2,
    }
    assert report.counts["normalised"] == {
        "16-bit image": 1, "CMYK image": 1, "alpha channel": 1, "palette image": 1}
    assert report.counts["text dropped"] == {
        "caption not UTF-8": 1, "empty caption": 1, "missing caption": 1}
    assert (report.rejected, report.normalised, report.texts_dropped) == (10, 4, 3)
    lines = rejects(out)
    assert len(lines) == 17
    assert all(set(line) == {"source", "id", "reason", "detail", "action"} for line in lines)
    by_id = {(line["id"], line["reason"]): line for line in lines}
    assert by_id["000000", "duplicate id"]["source"] == "00001.tar/000000"
    assert by_id["000006", "truncated image"]["action"] == "rejected"
    assert {line["source"] for line in lines if line["reason"] == "unsafe member name"} == {
        "00001.tar/../evil.jpg", "00001.tar//tmp/absolute.jpg"}

    ds = Dataset.open(out)
    samples = list(ds.iter_samples(layers=["original"]))
    assert [s["id"] for s in samples] == [
        "000000", "000001", "000002", "000003", "000004", "000005", "000011", "000012", "000014"]
    captions = {s["id"]: s["original"] for s in samples}
    assert captions["000000"] == "a red square" and captions["000001"] == "un café"
    assert captions["000011"] is None and captions["000012"] is None and captions["000014"] is None
    assert samples[0]["source"] == "http://x/0.jpg"
    assert all(ds.load_image(s).mode == "RGB" for s in samples)
    # normalised images are stored as 8-bit RGB PNG
    from PIL import Image

    stored = {s["id"]: Image.open(io.BytesIO(s["image"])) for s in samples}
    assert all(stored[i].format == "PNG" and stored[i].mode == "RGB"
               for i in ("000002", "000003", "000004", "000005"))
    assert stored["000000"].format == "JPEG"  # good bytes are kept as they came
    assert stored["000005"].getpixel((15, 15))[0] > 200  # 16-bit scaled, not clipped
    layer = ds.layer("original")
    assert layer.is_complete() and layer.info["producer"] == "ingest"
    meta = {row["id"]: row["meta"] for row in layer.iter_rows()}
    assert meta["000000"]["url"] == "http://x/0.jpg" and meta["000011"]["dropped"] == "missing caption"
    # nothing escaped the output folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]
    assert not list(tmp_path.rglob("evil.jpg")) and not Path("/tmp/absolute.jpg").exists()
    assert "rejected: 10" in report.summary() and "rejects.jsonl" in report.summary()


def test_truncated_tar_and_undecodable_member_names(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    whole = io.BytesIO()
    with tarfile.open(fileobj=whole, mode="w") as tar:
        for i in range(6):
            _add(tar, f"k{i}.jpg", jpeg(i))
            _add(tar, f"k{i}.txt", b"caption")
    data = whole.getvalue()
    (src / "a.tar").write_bytes(data[: len(data) * 2 // 3])  # cut inside k5
    with tarfile.open(src / "b.tar", "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        _add(tar, "caf\xe9.jpg", jpeg(9))
        _add(tar, "caf\xe9.txt", b"caption")
        _add(tar, "ok.jpg", jpeg(10))
        _add(tar, "ok.txt", b"caption")
    report = ingest(src, tmp_path / "out", progress=False)
    assert report.kept == 6  # k0..k4 and ok
    assert report.counts["rejected"] == {"corrupt tar": 1, "id not UTF-8": 1}
    broken = next(line for line in rejects(tmp_path / "out") if line["reason"] == "corrupt tar")
    assert broken["source"].startswith("a.tar/k5") and "unexpected end of data" in broken["detail"]


def test_rerun_of_a_finished_ingest_changes_nothing(tmp_path: Path) -> None:
    src = corrupt_webdataset(tmp_path / "src")
    first = ingest(src, tmp_path / "out", shard_size=4, progress=False)
    before = (tmp_path / "out" / "rejects.jsonl").read_bytes()
    again = ingest(src, tmp_path / "out", shard_size=4, progress=False)
    assert again.resumed and (again.kept, again.counts) == (first.kept, first.counts)
    assert (tmp_path / "out" / "rejects.jsonl").read_bytes() == before
    with pytest.raises(StoreError, match="other settings"):
        ingest(src, tmp_path / "out", shard_size=5, progress=False)


def test_max_pixels_and_bad_arguments(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.png").write_bytes(encode(noise(0, size=40), "PNG"))
    (src / "small.png").write_bytes(png(1))
    report = ingest(src, tmp_path / "out", max_pixels=1000, progress=False)
    assert report.kept == 1 and report.counts["rejected"] == {"image too large": 1}
    assert "40x40 pixels > limit 1000" in rejects(tmp_path / "out")[0]["detail"]
    with pytest.raises(StoreError, match="must not be inside"):
        ingest(src, src / "out", progress=False)
    with pytest.raises(StoreError, match="does not exist"):
        ingest(tmp_path / "nope", tmp_path / "o2", progress=False)
    with pytest.raises(StoreError, match="unknown format"):
        ingest(src, tmp_path / "o3", format="zip", progress=False)
    with pytest.raises(StoreError, match="does not apply"):
        ingest(src, tmp_path / "o4", format="folder", image_column="x", progress=False)


def test_image_folder_with_sidecars(tmp_path: Path) -> None:
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    bad = bad_images()
    (src / "a.jpg").write_bytes(jpeg(1))
    (src / "a.txt").write_text("first photo")
    (src / "a.png").write_bytes(png(2))  # same id "a" as a.jpg
    (src / "sub" / "b.png").write_bytes(png(3))  # no sidecar
    (src / "sub" / "c.jpg").write_bytes(bad["cmyk"])
    (src / "sub" / "c.txt").write_bytes(b"\xff\xfe\x00bad")
    (src / "empty.png").write_bytes(b"")
    (src / "notes.md").write_text("# not an image")
    (src / "orphan.txt").write_text("a caption whose image is gone")
    (src / ".DS_Store").write_bytes(b"\0\0")
    report = ingest(src, tmp_path / "out", progress=False)
    assert report.format == "folder"
    assert report.kept == 3
    assert report.counts["rejected"] == {"duplicate id": 1, "empty file": 1, "missing image": 1,
                                         "not an image": 1}
    assert report.counts["normalised"] == {"CMYK image": 1}
    assert report.counts["text dropped"] == {"caption not UTF-8": 1, "missing caption": 1}
    texts = Dataset.open(tmp_path / "out").layer("original").texts()
    assert texts == {"a": "first photo"}
    ids = [s["id"] for s in Dataset.open(tmp_path / "out").iter_samples()]
    assert ids == ["a", "sub/b", "sub/c"]


def test_image_folder_without_captions_has_no_caption_layer(tmp_path: Path) -> None:
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(3):
        (src / f"{i}.png").write_bytes(png(i))
    report = ingest(src, tmp_path / "out", progress=False)
    assert report.kept == 3 and report.layers == [] and report.texts_dropped == 0


def test_llava_json_becomes_a_conversation_layer(tmp_path: Path) -> None:
    src = tmp_path / "llava"
    (src / "images").mkdir(parents=True)
    (src / "images" / "1.jpg").write_bytes(jpeg(1))
    (src / "images" / "2.png").write_bytes(png(2))
    (src / "images" / "3.jpg").write_bytes(jpeg(3))
    (tmp_path / "secret.jpg").write_bytes(jpeg(4))
    turns = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A cat."}]
    entries = [
        {"id": 1, "image": "images/1.jpg", "conversations": turns},
        {"id": "2", "image": "images/2.png",
         "conversations": [{"from": "human", "value": "Describe."}, {"from": "gpt", "value": "Dog."}]},
        {"id": "3", "image": "images/3.jpg", "conversations": [{"from": "gpt"}]},
        {"id": "1", "image": "images/3.jpg", "conversations": turns},
        {"id": "4", "image": "images/missing.jpg", "conversations": turns},
        {"id": "5", "image": "../secret.jpg", "conversations": turns},
        {"id": "6", "conversations": turns},
        {"id": "7", "image": ["images/1.jpg", "images/2.png"], "conversations": turns},
        "not an object",
    ]
    (src / "data.json").write_text(json.dumps(entries))
    report = ingest(src, tmp_path / "out", progress=False)
    assert report.format == "llava" and report.kept == 3
    assert report.layers == ["conversations"]
    assert report.counts["rejected"] == {"bad entry": 1, "duplicate id": 1, "missing image": 2,
                                         "several images": 1, "unsafe image path": 1}
    assert report.counts["normalised"] == {"no image token": 1}
    assert report.counts["text dropped"] == {"bad conversations": 1}
    layer = Dataset.open(tmp_path / "out").layer("conversations")
    assert layer.kind == "conversation"
    texts = {k: json.loads(v) for k, v in layer.texts().items()}
    assert texts["1"] == turns
    assert texts["2"][0]["value"] == "<image>\nDescribe."
    assert "3" not in texts
    ds = Dataset.open(tmp_path / "out")
    assert [s["source"] for s in ds.iter_samples()] == ["images/1.jpg", "images/2.png", "images/3.jpg"]


def test_llava_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text('{"not": "a list"}')
    with pytest.raises(StoreError, match=r"d\.json: a LLaVA file holds a JSON list"):
        ingest(tmp_path / "d.json", tmp_path / "out", progress=False)
    (tmp_path / "e.jsonl").write_text('{"id": 1}\n{broken\n')
    with pytest.raises(StoreError, match=r"e\.jsonl line 2 is not valid JSON"):
        ingest(tmp_path / "e.jsonl", tmp_path / "out2", progress=False)


def test_parquet_with_bytes_structs_and_paths(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "pq"
    (src / "img").mkdir(parents=True)
    (src / "img" / "p.png").write_bytes(png(5))
    pq.write_table(pa.table({
        "key": ["b0", "b1", "b2"], "jpg": [jpeg(1), b"", png(2)],
        "caption": ["bytes one", "empty image", None],
        "url": ["http://a", "http://b", None],
    }), src / "part-0.parquet")
    pq.write_table(pa.table({
        "key": ["s0", "p0", "p1", "b0"],
        "jpg": [{"bytes": jpeg(3), "path": None}, {"bytes": None, "path": "img/p.png"},
                {"bytes": None, "path": "../../outside.png"}, {"bytes": jpeg(4), "path": None}],
        "caption": ["struct", "by path", "escapes", "dup"],
        "url": [None, None, None, None],
    }), src / "part-1.parquet")
    (src / "part-2.parquet").write_bytes(b"PAR1 not really parquet")
    report = ingest(src, tmp_path / "out", progress=False)
    assert report.format == "parquet" and report.kept == 4
    assert report.counts["rejected"] == {"corrupt file": 1, "duplicate id": 1, "empty file": 1,
                                         "unsafe image path": 1}
    assert report.counts["text dropped"] == {"missing caption": 1}
    ds = Dataset.open(tmp_path / "out")
    assert ds.layer("original").texts() == {"b0": "bytes one", "s0": "struct", "p0": "by path"}
    assert next(s["source"] for s in ds.iter_samples()) == "http://a"
    with pytest.raises(StoreError, match="no image column 'pic'"):
        ingest(src, tmp_path / "out2", image_column="pic", progress=False)


def test_hf_datasets_parquet_and_save_to_disk(tmp_path: Path) -> None:
    import datasets

    images = [noise(i) for i in range(5)]
    hf = datasets.Dataset.from_dict({"image": images, "text": [f"t{i}" for i in range(5)]})
    hf = hf.cast_column("image", datasets.Image())
    hf.save_to_disk(str(tmp_path / "saved"))
    hf.to_parquet(str(tmp_path / "exported.parquet"))
    for src in (tmp_path / "saved", tmp_path / "exported.parquet"):
        out = tmp_path / f"out-{src.stem}"
        report = ingest(src, out, progress=False)
        assert report.kept == 5 and report.rejected == 0, report.summary()
        ds = Dataset.open(out)
        assert ds.layer("original").texts()["exported-3" if src.suffix else "data-00000-of-00001-3"] == "t3"
        first = next(ds.iter_samples())
        assert np.array_equal(np.asarray(ds.load_image(first)), np.asarray(images[0]))
