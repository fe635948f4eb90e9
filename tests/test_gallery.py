"""report.html: a self-contained gallery of pretraining images with every caption layer, each
object mention marked right or wrong against the world's ground truth."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path

from vila2.data import Dataset
from vila2.pipeline.gallery import GALLERY_IMAGES, marked
from vila2.pipeline.report import collect, write_report
from vila2.world import write_world
from vila2.world.captions import describe
from vila2.world.quality import PretrainTruth, layer_quality
from vila2.world.scene import Obj, Scene

SCENE = Scene(3, "white", (Obj("circle", "red", "large", (50, 300, 400, 650)),))


def test_mentions_are_marked_right_and_wrong() -> None:
    text = 'A red circle & a green cross, and the word "square".'
    assert marked(text, SCENE) == ('A <span class="ok">red circle</span> &amp; a <span class="bad">green cross</span>'
                                   ', and the word &quot;square&quot;.')
    assert marked("<b>red circle</b>", None) == "&lt;b&gt;red circle&lt;/b&gt;"  # no ground truth: as written


def _stats(root: Path, rel: str, layer: str, world: Path | None) -> str:
    dataset = root / "world" / "pretrain"
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    texts = Dataset.open(dataset).layer(layer).texts()
    path.write_text(json.dumps({
        "layer": layer, "mean_words": sum(len(t.split()) for t in texts.values()) / len(texts),
        "kept": len(texts), "dataset": "world/pretrain", "world": "world" if world else None,
        "quality": layer_quality(dataset, layer, world)}))
    return rel


def _run(root: Path, with_truth: bool = True) -> dict:
    world = write_world(root / "world", seed=0, size="tiny")
    ds = Dataset.open(world / "pretrain")
    truth = PretrainTruth(world)
    ids = [s["id"] for s in ds.iter_samples(images=False)]
    # a recaption layer: perfect descriptions for even images, a made-up object for odd ones
    recap = ds.create_layer("recap-r1", "caption", producer="test")
    spec = ds.create_layer("spec-spatial", "caption", producer="test")
    for shard in recap.pending_shards():
        shard_ids = ds.shard_ids(shard)
        recap.write_shard(shard, [
            {"id": i, "text": describe(truth.scene(i)) if n % 2 == 0 else "A purple diamond. A purple cross."}  # type: ignore[arg-type]
            for n, i in enumerate(shard_ids)])
        spec.write_shard(shard, [{"id": i, "text": "left", "prompt": "Is the red circle left of the square?"}
                                 for i in shard_ids])
    assert len(ids) >= GALLERY_IMAGES
    w = world if with_truth else None
    rows = [
        {"name": "round 0", "kind": "round", "round": 0, "model": "m0",
         "caption_stats": _stats(root, "round0/captions/caption_stats.json", "alt", w)},
        {"name": "round 1", "kind": "round", "round": 1, "model": "m1",
         "caption_stats": _stats(root, "round1/caption/caption_stats.json", "recap-r1", w)},
        {"name": "+ spatial specialist", "kind": "specialist", "specialist": "spatial", "model": "s",
         "caption_stats": _stats(root, "specialists/spatial/caption/caption_stats.json", "spec-spatial", w)},
    ]
    return collect(root, rows, name="gallery-test")


def test_the_gallery_is_self_contained_and_shows_eight_images(tmp_path: Path) -> None:
    results = _run(tmp_path)
    report = write_report(tmp_path, results).read_text()
    assert "[report.html](report.html)" in report
    page = (tmp_path / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == GALLERY_IMAGES and all(s.startswith("data:image/png;base64,") for s in sources)
    # self-contained: nothing fetched from elsewhere
    assert not re.search(r"https?://|<link|<script|url\(", page)
    from PIL import Image

    first = Image.open(io.BytesIO(base64.b64decode(sources[0].split(",", 1)[1])))
    assert first.format == "PNG" and first.size == (64, 64)
    # every layer of every image, marked against the ground truth
    for label in ("alt-text (round 0 trains on it)", "round 0 recaption (round 1 trains on it)",
                  "spatial specialist's answer (the final model trains on it)"):
        assert page.count(html.escape(label)) == GALLERY_IMAGES
    assert page.count("Is the red circle left of the square?") == GALLERY_IMAGES  # a specialist's question
    assert page.count("ground truth: ") == GALLERY_IMAGES
    assert '<span class="ok">' in page and '<span class="bad">purple diamond</span>' in page
    assert "missed: " in page


def test_without_ground_truth_captions_are_shown_as_written(tmp_path: Path) -> None:
    results = _run(tmp_path, with_truth=False)
    assert results["rows"][0]["caption_quality"]["ground_truth"] == "no ground truth"
    write_report(tmp_path, results)
    page = (tmp_path / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == GALLERY_IMAGES
    assert "No ground truth" in page and 'class="ok"' not in page and 'class="bad"' not in page
