"""The sample store: format, layers, alignment, provenance, ranks, atomicity."""

from __future__ import annotations

import io
import json
import os
import socket
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vila2.data import Dataset, StoreError, shard_for_rank


def png(colour: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def make(tmp_path: Path, n: int = 7, shard_size: int = 3) -> Dataset:
    ds = Dataset.create(tmp_path / "ds")
    with ds.writer(shard_size=shard_size, source="test") as w:
        for i in range(n):
            w.add(f"s{i}", png((i * 30, 0, 0)), 8, 6)
    return ds


def test_import_is_light() -> None:
    import subprocess

    code = "import sys, vila2.data; print(sorted({'pyarrow','PIL','torch','numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_image_shards_and_manifest(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    ds = make(tmp_path)
    assert ds.shards() == ["00000", "00001", "00002"]
    assert ds.num_samples == 7
    m = json.loads((ds.path / "manifest.json").read_text())
    assert m["format"] == "vila2-dataset" and m["version"] == 1
    assert [s["rows"] for s in m["shards"]] == [3, 3, 1]
    assert all(len(s["sha256"]) == 64 for s in m["shards"])
    table = pq.read_table(ds.path / "images" / "00001.parquet")
    assert table.column_names == ["id", "image", "width", "height", "source"]
    assert str(table.schema.field("width").type) == "int32"
    assert table.column("id").to_pylist() == ["s3", "s4", "s5"]
    samples = list(Dataset.open(ds.path).iter_samples())
    assert [s["id"] for s in samples] == [f"s{i}" for i in range(7)]
    assert samples[0]["source"] == "test" and samples[0]["width"] == 8
    image = ds.load_image(samples[2])
    assert image.mode == "RGB" and image.size == (8, 6) and image.getpixel((0, 0)) == (60, 0, 0)
    # no temporary files remain
    assert not [p for p in ds.path.rglob(".*") if p.name != ".lock"]


def test_create_refuses_foreign_folder_and_open_needs_manifest(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not an empty folder"):
        Dataset.create(tmp_path / "mine")
    with pytest.raises(StoreError, match=r"no manifest\.json"):
        Dataset.open(tmp_path / "mine")
    ds = make(tmp_path)
    assert Dataset.create(ds.path).num_samples == 7  # create on a dataset opens it


def test_layer_roundtrip_provenance_and_alignment(tmp_path: Path) -> None:
    ds = make(tmp_path)
    writer = ds.create_layer("recap", "caption", producer="self", model="m", round=1,
                             prompt_set=("Describe the image in detail.",), settings={"t": 0})
    assert writer.pending_shards() == ["00000", "00001", "00002"]
    assert not writer.is_complete()
    with pytest.raises(StoreError, match="row 1 is 's9', expected 's1'"):
        writer.write_shard("00000", [{"id": "s0", "text": "a"}, {"id": "s9", "text": "b"},
                                     {"id": "s2", "text": "c"}])
    for shard in writer.pending_shards():
        rows = [{"id": i, "text": f"caption {i}", "kept": i != "s4", "scores": {"len": 1.0},
                 "prompt": "p", "meta": {"k": i}} for i in ds.shard_ids(shard)]
        writer.write_shard(shard, rows)
    assert writer.is_complete() and writer.pending_shards() == []
    with pytest.raises(StoreError, match="already finished"):
        writer.write_shard("00000", [{"id": i, "text": ""} for i in ds.shard_ids("00000")])
    layer = ds.layer("recap")
    assert layer.kind == "caption"
    assert layer.info["producer"] == "self" and layer.info["round"] == 1
    assert layer.info["prompt_set"] == ["Describe the image in detail."]
    assert "s4" not in layer.texts() and layer.texts()["s5"] == "caption s5"
    rows = list(layer.iter_rows(shards=["00001"]))
    assert rows[0] == {"id": "s3", "text": "caption s3", "kept": True, "scores": {"len": 1.0},
                       "prompt": "p", "meta": {"k": "s3"}, "shard": "00001"}
    samples = {s["id"]: s for s in ds.iter_samples(layers=["recap"])}
    assert samples["s3"]["recap"] == "caption s3" and samples["s4"]["recap"] is None
    texts_only = next(ds.iter_samples(shards=["00001"], layers=["recap"], images=False))
    assert texts_only == {"id": "s3", "width": 8, "height": 6, "source": "test",
                          "recap": "caption s3"}
    assert (ds.path / "layers" / "recap" / "00000.done").is_file()
    assert json.loads((ds.path / "layers" / "recap" / "00000.done").read_text())["rows"] == 3
    assert ds.manifest["layers"]["recap"]["kind"] == "caption"

    # same provenance: nothing pending; other provenance: refused; explicit delete
    assert ds.create_layer("recap", "caption", producer="self", model="m", round=1,
                           prompt_set=["Describe the image in detail."],
                           settings={"t": 0}).pending_shards() == []
    with pytest.raises(StoreError, match="already exists \\(finished\\)"):
        ds.create_layer("recap", "caption", producer="self", model="m", round=2)
    ds.delete_layer("recap")
    assert ds.layers() == [] and "recap" not in ds.manifest["layers"]
    with pytest.raises(StoreError, match="no layer 'recap'"):
        ds.layer("recap")


def test_layer_names_kinds_and_provenance_are_checked(tmp_path: Path) -> None:
    ds = make(tmp_path, n=2)
    with pytest.raises(StoreError, match="bad layer name"):
        ds.create_layer("../evil", producer="x")
    with pytest.raises(StoreError, match="bad layer name"):
        ds.create_layer("image", producer="x")
    with pytest.raises(StoreError, match="kind must be"):
        ds.create_layer("a", "summary", producer="x")
    with pytest.raises(TypeError, match="unknown provenance"):
        ds.create_layer("a", producer="x", temperature=1.0)
    with pytest.raises(TypeError, match="needs producer"):
        ds.create_layer("a")


def test_missing_layer_shard_is_an_error_naming_it(tmp_path: Path) -> None:
    ds = make(tmp_path, n=4, shard_size=2)
    writer = ds.create_layer("half", producer="x")
    writer.write_shard("00000", [{"id": i, "text": i} for i in ds.shard_ids("00000")])
    with pytest.raises(StoreError, match="no finished shard '00001'"):
        list(ds.iter_samples(layers=["half"]))
    assert [s["half"] for s in ds.iter_samples(shards=["00000"], layers=["half"])] == ["s0", "s1"]


def test_provenance_records_a_local_model_relative_to_the_dataset(tmp_path: Path) -> None:
    """A run folder that is moved or copied still points at its own models: a local model folder
    is stored relative to the dataset, next to the hash the caller computed."""
    import shutil

    from vila2.models import model_hash

    run = tmp_path / "run"
    ds = make(run, n=1)
    model = run / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    info = ds.create_layer("a", producer="x", model=str(model.resolve()), model_hash=model_hash(model)).info
    assert not Path(info["model"]).is_absolute()
    assert (ds.path / info["model"]).resolve() == model.resolve()
    assert info["model_hash"] == model_hash(model) and len(info["model_hash"]) == 16
    moved = tmp_path / "moved"
    shutil.move(str(run), moved)
    again = Dataset.open(moved / ds.path.relative_to(run)).layer("a").info
    assert (moved / ds.path.relative_to(run) / again["model"]).resolve() == (moved / "model").resolve()
    (moved / "model" / "config.json").write_text('{"changed": 1}')
    assert model_hash(moved / "model") != info["model_hash"]


def test_ranks_split_shards_and_resume(tmp_path: Path) -> None:
    ds = make(tmp_path, n=10, shard_size=2)
    assert shard_for_rank(ds.shards(), 1, 3) == ["00001", "00004"]
    with pytest.raises(ValueError):
        shard_for_rank(ds.shards(), 3, 3)
    writer = ds.create_layer("c", producer="x")
    ranks = [writer.pending_shards(rank, 2) for rank in range(2)]
    assert ranks == [["00000", "00002", "00004"], ["00001", "00003"]]
    writer.write_shard("00002", [{"id": i, "text": i} for i in ds.shard_ids("00002")])
    assert writer.pending_shards(0, 2) == ["00000", "00004"]


def test_writer_appends_and_discards_uncommitted_files(tmp_path: Path) -> None:
    ds = make(tmp_path, n=3, shard_size=3)
    # what a writer killed between rename and manifest update leaves behind
    (ds.path / "images" / "00001.parquet").write_bytes(b"half")
    host = socket.gethostname()
    (ds.path / "images" / f".00001.parquet.tmp-999999999@{host}").write_bytes(b"half")
    with ds.writer(shard_size=3) as w:
        w.add("t0", png((0, 0, 0)), 8, 6)
    assert ds.shards() == ["00000", "00001"] and ds.shard_ids("00001") == ["t0"]
    assert not list((ds.path / "images").glob(".*"))


def test_stale_temps_of_live_or_remote_writers_are_kept(tmp_path: Path) -> None:
    from vila2.data import atomic

    host = socket.gethostname()
    names = [f".a.tmp-{os.getpid()}@{host}", ".b.tmp-999999999@other-node", f".c.tmp-999999999@{host}"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    atomic.remove_stale_temps(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == names[:2]


def test_writer_refuses_duplicate_ids(tmp_path: Path) -> None:
    ds = make(tmp_path, n=3, shard_size=3)
    with ds.writer() as w:
        assert "s1" in w and "t0" not in w
        with pytest.raises(StoreError, match="duplicate sample id 's1'"):
            w.add("s1", png((0, 0, 0)), 8, 6)
        w.add("t0", png((0, 0, 0)), 8, 6)
        with pytest.raises(StoreError, match="duplicate sample id 't0'"):
            w.add("t0", png((0, 0, 0)), 8, 6)
    assert ds.num_samples == 4


def test_writer_abandons_shard_on_error(tmp_path: Path) -> None:
    ds = make(tmp_path, n=3, shard_size=3)
    with pytest.raises(RuntimeError), ds.writer(shard_size=100) as w:
        for i in range(70):
            w.add(f"u{i}", png((0, 0, 0)), 8, 6)
        raise RuntimeError("boom")
    assert ds.shards() == ["00000"]
    assert sorted(p.name for p in (ds.path / "images").iterdir()) == ["00000.parquet"]


def test_load_image_refuses_more_than_max_pixels(tmp_path: Path) -> None:
    from vila2.data import BadImage

    make(tmp_path, n=1)
    small = Dataset.open(tmp_path / "ds", max_pixels=40)
    sample = next(small.iter_samples())
    with pytest.raises(BadImage, match="8x6 pixels > limit 40"):
        small.load_image(sample)


@given(n=st.integers(0, 40), world=st.integers(1, 8))
def test_every_shard_goes_to_exactly_one_rank(n: int, world: int) -> None:
    shards = [f"{i:05d}" for i in range(n)]
    parts = [shard_for_rank(shards, rank, world) for rank in range(world)]
    assert sorted(s for part in parts for s in part) == shards
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
