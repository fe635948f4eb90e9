"""The world as written to disk: layout, determinism, held-out benchmarks, statistics, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from vila2.captioning.prompts import LONG_PROMPTS
from vila2.data import Dataset
from vila2.world import SIZES, resolve_size, world_texts, write_world
from vila2.world.conversations import DETAIL_PROMPTS, GROUNDING_PROMPT, OCR_PROMPT, SPATIAL_PROMPT
from vila2.world.scene import scene_seed
from vila2.world.texts import TRAINING_SETS

BENCHES = ("vqa", "caption", "spatial", "grounding", "ocr")


def _images(ds_path: Path) -> dict[str, bytes]:
    return {s["id"]: s["image"] for s in Dataset.open(ds_path).iter_samples()}


def _layer(ds_path: Path, name: str) -> dict[str, str]:
    return Dataset.open(ds_path).layer(name).texts()


def test_layout_and_sizes(tiny_world: Path) -> None:
    info = json.loads((tiny_world / "world.json").read_text())
    size = SIZES["tiny"]
    assert info["seed"] == 0 and info["size"] == "tiny" and info["image_size"] == 64
    expected = {"pretrain": size.pretrain, "sft": size.seed + size.sft, "spatial": size.spatial,
                "grounding": size.grounding, "ocr": size.ocr, "bench/mmmu": size.mmmu,
                **{f"bench/{b}": size.bench for b in BENCHES}}
    assert info["stats"]["datasets"] == expected
    assert Dataset.open(tiny_world / "pretrain").layers() == ["alt"]
    for name in ("sft", "spatial", "grounding", "ocr"):
        ds = Dataset.open(tiny_world / name)
        # sft also holds its conversations with a description turn on every VQA image
        assert ds.layers() == (["conversations", "described"] if name == "sft" else ["conversations"])
        assert all(ds.layer(layer).kind == "conversation" and ds.layer(layer).is_complete() for layer in ds.layers())
        assert ds.num_samples == expected[name]
    sft = Dataset.open(tiny_world / "sft")
    plain, described = sft.layer("conversations").texts(), sft.layer("described").texts()
    for sample_id, text in plain.items():
        turns, more = json.loads(text), json.loads(described[sample_id])
        if sample_id.startswith("seed-"):
            assert more == turns
        else:  # the same questions and answers, one description turn (two messages) added
            assert len(more) == len(turns) + 2
            assert {t["value"].replace("<image>\n", "") for t in turns} <= {t["value"].replace("<image>\n", "") for t in more}
    for name in BENCHES:
        ds = Dataset.open(tiny_world / "bench" / name)
        assert ds.layers() == ["conversations", "truth"]
        for sample in ds.iter_samples(layers=["conversations", "truth"]):
            turns = json.loads(sample["conversations"])
            assert len(turns) == 2 and turns[0]["value"].startswith("<image>\n")
            assert json.loads(sample["truth"])["objects"]
            assert ds.load_image(sample).size == (64, 64)
    assert (tiny_world / "bench" / "mmmu" / "validation.parquet").is_file()
    assert not (tiny_world / ".partial").exists()


def test_sft_holds_the_detailed_caption_seed(tiny_world: Path) -> None:
    convs = _layer(tiny_world / "sft", "conversations")
    seed = {k: json.loads(v) for k, v in convs.items() if k.startswith("seed-")}
    assert len(seed) == SIZES["tiny"].seed
    pretrain = _images(tiny_world / "pretrain")
    sft = _images(tiny_world / "sft")
    for sample_id, turns in seed.items():
        assert sft[sample_id] == pretrain[sample_id.replace("seed-", "pretrain-")]
        prompt = turns[0]["value"].removeprefix("<image>\n")
        assert prompt in DETAIL_PROMPTS
        assert 30 <= len(turns[1]["value"].split()) <= 80
    assert {turns[0]["value"].removeprefix("<image>\n") for turns in seed.values()} & set(LONG_PROMPTS)
    vqa = [json.loads(v) for k, v in convs.items() if k.startswith("sft-")]
    assert len(vqa) == SIZES["tiny"].sft and all(len(t) >= 4 for t in vqa)


def test_sft_carries_a_share_of_short_domain_questions(tiny_world: Path) -> None:
    """As LLaVA's SFT mix carries RefCOCO, OCR-VQA and Visual Genome questions: the generalist
    learns each domain's answer format, never its domain sets or their long task prompts."""
    sft = Dataset.open(tiny_world / "sft")
    plain, described = sft.layer("conversations").texts(), sft.layer("described").texts()
    vqa_starts = ("What color", "What shape", "How many", "Is there a")
    domain = {}
    for sample_id, text in plain.items():
        if sample_id.startswith("sft-"):
            last = json.loads(text)[-2]["value"].removeprefix("<image>\n")
            if not last.startswith(vqa_starts):
                domain[sample_id] = last
                assert json.loads(described[sample_id])[-2:] == json.loads(text)[-2:]
    share = len(domain) / SIZES["tiny"].sft
    assert abs(share - SIZES["tiny"].sft_domain_fraction) < 0.12, share
    asked = " ".join(domain.values())
    markers = {"grounding": ("bounding box", "object is at"), "ocr": ("written",),
               "spatial": ("relative to", "closest", "Where is the", "Is the")}
    assert all(any(m in asked for m in ms) for ms in markers.values())  # each domain is asked
    assert not set(domain.values()) & {SPATIAL_PROMPT, GROUNDING_PROMPT, OCR_PROMPT}


def test_domain_sets_hold_their_task_prompts(tiny_world: Path) -> None:
    for name, prompt in (("spatial", SPATIAL_PROMPT), ("grounding", GROUNDING_PROMPT), ("ocr", OCR_PROMPT)):
        convs = [json.loads(v) for v in _layer(tiny_world / name, "conversations").values()]
        asked = [t["value"].removeprefix("<image>\n") for c in convs for t in c if t["from"] == "human"]
        assert asked.count(prompt) == len(convs)
    ocr = [json.loads(v) for v in _layer(tiny_world / "ocr", "conversations").values()]
    assert sum('"' in t["value"] for c in ocr for t in c if t["from"] == "gpt") > len(ocr) * 0.7


def test_benchmarks_never_overlap_training_images(tiny_world: Path) -> None:
    size = SIZES["tiny"]
    train_hashes = set()
    for name in TRAINING_SETS:
        train_hashes |= {hashlib.sha256(png).hexdigest() for png in _images(tiny_world / name).values()}
    train_seeds = {scene_seed(0, split, i) for split, n in (
        ("pretrain", size.pretrain), ("sft", size.sft), ("spatial", size.spatial),
        ("grounding", size.grounding), ("ocr", size.ocr)) for i in range(n)}
    bench_hashes, bench_seeds = set(), set()
    for name in BENCHES:
        path = tiny_world / "bench" / name
        bench_hashes |= {hashlib.sha256(png).hexdigest() for png in _images(path).values()}
        bench_seeds |= {json.loads(t)["seed"] for t in _layer(path, "truth").values()}
    import pyarrow.parquet as pq

    rows = pq.read_table(tiny_world / "bench" / "mmmu" / "validation.parquet").to_pylist()
    bench_hashes |= {hashlib.sha256(r[f"image_{i}"]["bytes"]).hexdigest()
                     for r in rows for i in range(1, 8) if r[f"image_{i}"]}
    assert len(bench_seeds) == len(BENCHES) * size.bench
    assert not train_hashes & bench_hashes
    assert not train_seeds & bench_seeds


def test_same_seed_same_world_other_seed_other_world(tiny_world: Path, tmp_path: Path) -> None:
    again = write_world(tmp_path / "again", seed=0, size="tiny")
    other = write_world(tmp_path / "other", seed=1, size=20)
    for name in (*TRAINING_SETS, *(f"bench/{b}" for b in BENCHES)):
        assert _images(again / name) == _images(tiny_world / name), name
        for layer in Dataset.open(again / name).layers():
            assert _layer(again / name, layer) == _layer(tiny_world / name, layer), (name, layer)
    mmmu = "bench/mmmu/validation.parquet"
    assert (again / mmmu).read_bytes() == (tiny_world / mmmu).read_bytes()
    first = json.loads((tiny_world / "world.json").read_text())["stats"]
    assert json.loads((again / "world.json").read_text())["stats"] == first
    theirs = _images(other / "pretrain")
    assert len(theirs) == 20 and set(theirs.values()).isdisjoint(_images(tiny_world / "pretrain").values())


def test_rewriting_a_world(tiny_world: Path, tmp_path: Path) -> None:
    assert write_world(tiny_world, seed=0, size="tiny") == tiny_world  # finished: returned as is
    with pytest.raises(ValueError, match="other settings"):
        write_world(tiny_world, seed=1, size="tiny")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        write_world(tmp_path / "busy", size="tiny")
    killed = tmp_path / "killed"
    (killed / ".partial" / "pretrain").mkdir(parents=True)  # what a killed build leaves
    write_world(killed, size=20)
    assert Dataset.open(killed / "pretrain").num_samples == 20 and not (killed / ".partial").exists()


def test_sizes() -> None:
    assert resolve_size("tiny") == SIZES["tiny"]
    scaled = resolve_size("2000")
    assert scaled.pretrain == 2000 and scaled.bench >= 20 and scaled.seed == 80
    for bad in ("huge", 0):
        with pytest.raises(ValueError, match="world size"):
            resolve_size(bad)


def test_statistics(tiny_world: Path) -> None:
    stats = json.loads((tiny_world / "world.json").read_text())["stats"]["pretrain"]
    assert stats["images"] == SIZES["tiny"].pretrain
    assert 9 <= stats["alt_words"]["mean"] <= 15  # COYO-like: about a dozen words
    assert stats["description_words"]["min"] >= 30 and stats["description_words"]["max"] <= 80
    assert 1.8 <= stats["objects_per_image"]["mean"] <= 3.0
    assert set(stats["objects_per_image"]["histogram"]) == {"1", "2", "3", "4"}
    assert 0.2 <= stats["alt_object_coverage"] <= 0.6
    assert 0.05 <= stats["alt_hallucination"] <= 0.35


def test_world_command_prints_statistics(tiny_world: Path, tmp_path: Path) -> None:
    from vila2.commands.world import command

    result = CliRunner().invoke(command, ["--out", str(tiny_world), "--size", "tiny", "--stats"])
    assert result.exit_code == 0, result.output
    assert "alt-text words:" in result.output and "objects per image:" in result.output
    assert "alt-text coverage:" in result.output and "pretrain 300" in result.output
    result = CliRunner().invoke(command, ["--out", str(tiny_world), "--seed", "3", "--size", "tiny"])
    assert result.exit_code == 1 and "other settings" in result.output
    result = CliRunner().invoke(command, ["--out", str(tmp_path / "w"), "--size", "nope"])
    assert result.exit_code == 1 and "unknown world size 'nope'" in result.output


def test_world_texts_cover_training_sets_only(tiny_world: Path) -> None:
    texts = list(world_texts(tiny_world))
    assert not any("<image>" in t for t in texts)
    joined = "\n".join(texts)
    for needed in (*LONG_PROMPTS, SPATIAL_PROMPT, GROUNDING_PROMPT, OCR_PROMPT, "stock photo"):
        assert needed in joined
    size = SIZES["tiny"]
    assert len(texts) > size.pretrain + 2 * (size.sft + size.spatial)
    with pytest.raises(FileNotFoundError, match=r"no world\.json"):
        next(world_texts(tiny_world / "pretrain"))
