"""Export layers as LLaVA JSON + images and as Parquet for ``datasets``; the CLI commands."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_ingest import jpeg, png

from vila2.cli import cli
from vila2.data import Dataset, StoreError, export, ingest


def photo_folder(root: Path) -> Path:
    """Four images (the JPEG id has a slash and a space); three have captions."""
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a b.jpg").write_bytes(jpeg(1))
    (root / "sub" / "a b.txt").write_text("alt a")
    for i in (2, 3, 4):
        (root / f"p{i}.png").write_bytes(png(i))
    (root / "p2.txt").write_text("alt 2")
    (root / "p3.txt").write_text("alt 3")
    return root


def captioned(tmp_path: Path) -> Dataset:
    ingest(photo_folder(tmp_path / "src"), tmp_path / "ds", progress=False)
    ds = Dataset.open(tmp_path / "ds")
    writer = ds.create_layer("recap", producer="test", round=1)
    for shard in writer.pending_shards():
        writer.write_shard(shard, [{"id": i, "text": f"a detailed look at {i}", "kept": i != "p3",
                                    "prompt": "Describe the image in detail."}
                                   for i in ds.shard_ids(shard)])
    return ds


def test_llava_export_concat(tmp_path: Path) -> None:
    ds = captioned(tmp_path)
    report = export(ds.path, tmp_path / "llava", layers=["original", "recap"],
                    prompt="Describe the image.", progress=False)
    assert (report.format, report.examples, report.skipped) == ("llava", 4, 0)
    records = json.loads((tmp_path / "llava" / "data.json").read_text())
    by_id = {r["id"]: r for r in records}
    assert by_id["p2"]["conversations"] == [
        {"from": "human", "value": "<image>\nDescribe the image."},
        {"from": "gpt", "value": "alt 2 a detailed look at p2"}]
    assert by_id["p3"]["conversations"][1]["value"] == "alt 3"  # recap not kept
    assert by_id["p4"]["conversations"][1]["value"] == "a detailed look at p4"  # no alt-text
    image = tmp_path / "llava" / by_id["sub/a b"]["image"]
    assert image.suffix == ".jpg" and image.parent.name == "0-ds" and " " not in image.name
    assert image.read_bytes() == jpeg(1)
    assert not [p for p in (tmp_path / "llava").rglob(".*")]
    with pytest.raises(StoreError, match="not empty"):
        export(ds.path, tmp_path / "llava", layers=["original"], progress=False)


def test_llava_roundtrip_of_a_conversation_layer(tmp_path: Path) -> None:
    src = tmp_path / "llava-in"
    src.mkdir()
    (src / "x.png").write_bytes(png(9))
    turns = [{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "Red."},
             {"from": "human", "value": "Sure?"}, {"from": "gpt", "value": "Yes."}]
    (src / "d.json").write_text(json.dumps([{"id": "x", "image": "x.png", "conversations": turns}]))
    ingest(src / "d.json", tmp_path / "ds", progress=False)
    export(tmp_path / "ds", tmp_path / "out", layers=["conversations"], progress=False)
    again = ingest(tmp_path / "out" / "data.json", tmp_path / "ds2", progress=False)
    assert again.kept == 1 and again.rejected == 0
    layer = Dataset.open(tmp_path / "ds2").layer("conversations")
    assert json.loads(layer.texts()["x"]) == turns


def test_parquet_export_loads_with_datasets(tmp_path: Path) -> None:
    import datasets
    from PIL import Image

    ds = captioned(tmp_path)
    report = export(ds.path, tmp_path / "pq", layers=["original"], template="replace",
                    format="parquet", prompt="Caption.", progress=False)
    assert (report.examples, report.skipped) == (3, 1)  # p4 has no original caption
    assert [Path(f).name for f in report.files] == ["data-00000.parquet"]
    loaded = datasets.load_dataset("parquet", data_dir=str(tmp_path / "pq"), split="train")
    assert loaded.num_rows == 3
    row = loaded[[r for r in loaded["id"]].index("sub/a b")]
    assert row["image"].size == (16, 16) and row["image"].mode == "RGB"
    assert np.array_equal(np.asarray(row["image"]),
                          np.asarray(Image.open(io.BytesIO(jpeg(1))).convert("RGB")))
    assert row["conversations"] == [{"from": "human", "value": "<image>\nCaption."},
                                    {"from": "gpt", "value": "alt a"}]


def test_cli_ingest_and_export(tmp_path: Path) -> None:
    runner = CliRunner()
    src = photo_folder(tmp_path / "src")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    result = runner.invoke(cli, ["ingest", str(src), "--out", str(tmp_path / "ds"), "--quiet",
                                 "--shard-size", "2"])
    assert result.exit_code == 0, result.output
    assert "ingested 4 samples" in result.output and "rejected: 1 (1 not an image)" in result.output
    result = runner.invoke(cli, ["ingest", str(src), "--out", str(tmp_path / "alt"), "--quiet",
                                 "--caption-layer", "alt"])
    assert result.exit_code == 0 and Dataset.open(tmp_path / "alt").layers() == ["alt"]
    result = runner.invoke(cli, ["export", str(tmp_path / "ds"), "--layers", "original",
                                 "--format", "parquet", "--out", str(tmp_path / "pq"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "exported 3 examples as parquet" in result.output
    result = runner.invoke(cli, ["export", str(tmp_path / "ds"), "--layers", "nope",
                                 "--out", str(tmp_path / "x"), "--quiet"])
    assert result.exit_code == 1 and "no layer 'nope'" in result.output
    result = runner.invoke(cli, ["ingest", str(src), "--out", str(tmp_path / "ds"), "--quiet"])
    assert result.exit_code == 1 and "other settings" in result.output
