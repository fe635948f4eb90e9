"""vila2-dedup: `vila2 dedup` on world images and their Pillow-made copies, across shards."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from vila2_dedup.benchmark import TRANSFORMS, build_set, make_copy, score
from vila2_dedup.captions import shingles
from vila2_dedup.dedup import DedupError, dedup
from vila2_dedup.groups import decide

from vila2.data import Dataset


@pytest.fixture(scope="module")
def labelled(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """300 distinct world images + 180 copies (30 of each transform), in shards of 100, with an
    ``alt`` caption layer (copies carry edited captions)."""
    out = tmp_path_factory.mktemp("dedup") / "set"
    return out, build_set(tiny_world, out, originals=300, copies=180, seed=0)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VILA2_LOAD_PLUGINS": "vila2_dedup"}
    return subprocess.run([sys.executable, "-m", "vila2", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_listed_and_its_command_registered() -> None:
    plugins = {p["name"]: p for p in json.loads(cli("plugins", "--json").stdout)}
    assert plugins["vila2_dedup"]["distribution"] == "vila2-dedup"
    assert plugins["vila2_dedup"]["hooks"] == ["register_commands"]
    assert "--out-layer" in cli("dedup", "--help").stdout


def test_images_across_shards(labelled: tuple[Path, dict[str, str]]) -> None:
    data, group = labelled
    assert len(Dataset.open(data).shards()) == 5  # copies sit in other shards than originals
    done = cli("dedup", str(data), "--out-layer", "dedup-img", "--images", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["images_indexed"] == 480 and report["shards_written"] == 5
    result = score(data, "dedup-img", group)
    assert result["precision"] >= 0.98, result
    assert result["recall"] >= 0.85, result
    for transform in ("resize", "upscale", "jpeg", "bright"):
        assert result["per_transform"][transform]["recall"] >= 0.95, result
    rows = {r["id"]: r for r in Dataset.open(data).layer("dedup-img").iter_rows()}
    dropped = [r for r in rows.values() if not r["kept"]]
    assert dropped and all(r["meta"]["duplicate_of"] < r["id"] for r in dropped)
    assert all(rows[r["meta"]["duplicate_of"]]["kept"] for r in dropped)  # names a kept id
    assert all(r["meta"]["duplicate_by"] == "image" and "image_distance" in r["meta"] for r in dropped)


def test_captions_and_their_texts(labelled: tuple[Path, dict[str, str]]) -> None:
    data, group = labelled
    report = dedup(data, "dedup-cap", captions="alt", log=lambda line: None)
    assert report.captions_indexed == 480
    result = score(data, "dedup-cap", group)
    assert result["precision"] >= 0.98 and result["recall"] >= 0.9, result
    ds = Dataset.open(data)
    kept = ds.layer("dedup-cap").texts()
    alt = ds.layer("alt").texts()
    assert kept and all(alt[i] == t for i, t in kept.items())  # the layer carries the texts


def test_both_at_once_and_resume(labelled: tuple[Path, dict[str, str]]) -> None:
    data, group = labelled
    first = dedup(data, "dedup-both", images=True, captions="alt", log=lambda line: None)
    assert first.dropped_by_image + first.dropped_by_caption == 480 - first.kept
    both = score(data, "dedup-both", group)
    assert both["recall"] >= 0.95 and both["precision"] >= 0.98, both
    again = dedup(data, "dedup-both", images=True, captions="alt", log=lambda line: None)
    assert again.shards_written == 0  # finished: nothing rewritten
    with pytest.raises(DedupError, match="other provenance"):
        dedup(data, "dedup-both", images=True, radius=4, log=lambda line: None)


def test_distinct_images_are_not_flagged(tiny_world: Path, tmp_path: Path) -> None:
    ds = Dataset.create(tmp_path / "distinct")
    with ds.writer(shard_size=64) as writer:
        for sample in Dataset.open(tiny_world / "pretrain").iter_samples():
            writer.add(sample["id"], sample["image"], sample["width"], sample["height"])
    report = dedup(ds.path, "d", images=True, log=lambda line: None)
    assert report.samples == 300 and report.dropped_by_image <= 1


def test_a_bad_image_is_named_and_kept(tiny_world: Path, tmp_path: Path) -> None:
    ds = Dataset.create(tmp_path / "bad")
    rng = random.Random(0)
    with ds.writer(shard_size=4) as writer:
        for i, sample in enumerate(Dataset.open(tiny_world / "pretrain").iter_samples()):
            if i == 6:
                break
            writer.add(sample["id"], sample["image"], sample["width"], sample["height"])
            if i == 0:
                image = Image.open(io.BytesIO(sample["image"])).convert("RGB")
                data, w, h = make_copy(image, "jpeg", rng)
                writer.add("zz-copy", data, w, h)
        writer.add("zz-broken", b"\x89PNG\r\n\x1a\nnot really", 64, 64)
    runner = CliRunner()
    from vila2_dedup.command import command

    result = runner.invoke(command, [str(ds.path), "--out-layer", "d", "--images"])
    assert result.exit_code == 0, result.output
    assert "'zz-broken'" in result.output and "unreadable" in result.output
    assert "dedup: searching 7 images for near-duplicate pairs" in result.output  # 8 samples, one unread
    rows = {r["id"]: r for r in ds.layer("d").iter_rows()}
    assert rows["zz-broken"]["kept"] and "error" in rows["zz-broken"]["meta"]
    assert not rows["zz-copy"]["kept"] and rows["zz-copy"]["meta"]["duplicate_of"] == sorted(rows)[0]


def test_a_hashing_bug_is_raised_not_taken_for_an_unreadable_image(monkeypatch: pytest.MonkeyPatch) -> None:
    from vila2_dedup import images

    def broken(self, id, image):
        raise TypeError("a bug in the hashing")

    monkeypatch.setattr(images.ImageIndex, "add", broken)
    with pytest.raises(TypeError, match="a bug in the hashing"):
        images.index_images([{"id": "a"}], lambda sample: Image.new("RGB", (8, 8)))


def test_usage_errors_name_the_option(labelled: tuple[Path, dict[str, str]]) -> None:
    data, _ = labelled
    with pytest.raises(DedupError, match="--images"):
        dedup(data, "x")
    with pytest.raises(DedupError, match="no layer 'nope'"):
        dedup(data, "x", captions="nope")
    with pytest.raises(DedupError, match="--out-layer"):
        dedup(data, "alt", captions="alt")


def test_the_kept_one_is_the_smallest_id_whatever_the_order() -> None:
    edges = [("c", "b", "image", 3.0), ("b", "a", "image", 2.0), ("d", "e", "caption", 0.9)]
    for order in (edges, edges[::-1]):
        dropped = decide(order)
        assert {k: v.of for k, v in dropped.items()} == {"b": "a", "e": "d"}
    # "c" matched only "b", which is dropped: "c" is kept, never chained to "a"


def test_templated_captions_share_a_big_bucket() -> None:
    from vila2_dedup.captions import CaptionIndex

    index = CaptionIndex()
    for k in range(300):  # one template: every LSH band lands in one bucket of ~300
        index.add(f"{k:04d}", f"a small red circle and a large blue square on a white background {k}")
    index.add("9999", "an orange cross")
    pairs = list(index.pairs())
    assert pairs and all(s >= index.threshold for _, _, s in pairs)
    dropped = decide((index.ids[i], index.ids[j], "caption", s) for i, j, s in pairs)
    assert len(dropped) == 299 and {d.of for d in dropped.values()} == {"0000"}
    assert "9999" not in dropped


def test_a_reworded_caption_is_grouped_and_a_distinct_one_is_not() -> None:
    from vila2_dedup.captions import CaptionIndex

    index = CaptionIndex()
    index.add("a", "A small red circle and a large blue square on a white background, seen from above.")
    index.add("b", "a small red circle and a big blue square on a white background seen from above")
    index.add("c", "A yellow triangle above a green cross on a beige background, seen from above.")
    pairs = list(index.pairs())  # candidates from datasketch.MinHashLSH, confirmed on the signatures
    assert [(index.ids[i], index.ids[j]) for i, j, _ in pairs] == [("a", "b")]
    assert pairs[0][2] >= index.threshold
    dropped = decide((index.ids[i], index.ids[j], "caption", s) for i, j, s in pairs)
    assert {k: v.of for k, v in dropped.items()} == {"b": "a"}


def test_the_colour_check_tells_apart_what_the_thumbnails_cannot() -> None:
    """A small blue circle on white; the same on gray, and a blue diamond in its place, pass the
    hash and the thumbnail test (the thumbnail is brightness-normalised and 8×8) but not the
    colour check; brightened, recompressed and resized copies pass all three."""
    from vila2_dedup.images import ImageIndex

    from vila2.world.render import render
    from vila2.world.scene import Obj, Scene

    def scene(seed: int, background: str, shape: str = "circle") -> Image.Image:
        return render(Scene(seed, background, (Obj(shape, "blue", "small", (600, 100, 780, 280)),)))

    original = scene(5, "white")
    images = {"a": original, "b-gray": scene(7, "gray"), "c-diamond": scene(10, "white", "diamond")}
    rng = random.Random(0)
    for transform in ("bright", "jpeg", "resize"):
        data, _, _ = make_copy(original, transform, rng)
        images[f"a~{transform}"] = Image.open(io.BytesIO(data)).convert("RGB")
    index = ImageIndex()
    for id, image in images.items():
        index.add(id, image)

    def partners(colour_check: bool) -> set[str]:
        return {index.ids[j] for i, j, _ in index.pairs(colour_check=colour_check) if index.ids[i] == "a"}

    copies = {"a~bright", "a~jpeg", "a~resize"}
    assert partners(colour_check=False) == copies | {"b-gray", "c-diamond"}
    assert partners(colour_check=True) == copies


def test_shingles_ignore_case_and_punctuation() -> None:
    assert shingles("A red, red CIRCLE!") == shingles("a red red circle")
    assert shingles("...") == set()
    assert TRANSFORMS == ("resize", "upscale", "jpeg", "crop", "bright", "combo")


def test_a_slight_crop_is_found_by_the_crop_hashes() -> None:
    """A 5% crop of a small blue diamond on gray moves the full frame's pHash 30 bits away, past
    the radius; the crop hashes find it and the fine thumbnails confirm it. The same diamond
    elsewhere, or red, is not paired."""
    from vila2_dedup.images import RADIUS, ImageIndex, image_hash

    from vila2.world.render import render
    from vila2.world.scene import Obj, Scene

    def scene(color: str = "blue", box: tuple[int, int, int, int] = (421, 169, 623, 371)) -> Image.Image:
        return render(Scene(5, "gray", (Obj("diamond", color, "small", box),))).convert("RGB")

    original = scene()
    images = {"a": original, "a~crop": original.crop((3, 0, 64, 61)),
              "b-moved": scene(box=(121, 569, 323, 771)), "c-red": scene("red")}
    assert bin(image_hash(original) ^ image_hash(images["a~crop"])).count("1") > RADIUS
    index = ImageIndex()
    for id, image in images.items():
        index.add(id, image)
    pairs = {(index.ids[i], index.ids[j]) for i, j, _ in index.pairs()}
    assert pairs == {("a", "a~crop")}
    # the crop path needs the colour check: without it only the full-frame path runs
    assert ("a", "a~crop") not in {(index.ids[i], index.ids[j]) for i, j, _ in index.pairs(colour_check=False)}


def test_scene_difference_names_what_tells_two_scenes_apart() -> None:
    from vila2_dedup.benchmark import scene_difference

    same = scene_difference(1, "pretrain-000003", "pretrain-000003")
    assert same == {"differ": [], "twin": True, "pixels_differing": 0.0}
    other = scene_difference(1, "pretrain-000003", "pretrain-000010")
    assert other["differ"] and not other["twin"] and other["pixels_differing"] > 0
    with pytest.raises(ValueError, match="'copy-1' is not a pretraining image"):
        scene_difference(1, "copy-1", "pretrain-000003")
