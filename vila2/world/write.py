"""Write the whole world as vila2 datasets (layout in docs/INTERNALS.md, "The embedded world").

Each split draws its scenes from its own seeds (:func:`vila2.world.scene.scene_seed`), and a
benchmark image whose pixels equal a training image's is skipped, so benchmarks never overlap
training data. The world is built in ``OUT/.partial`` and moved into place when finished;
``world.json`` is written last and marks a finished world, so a killed build starts over and a
finished one is returned as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vila2.world import conversations as conv
from vila2.world.benchmarks import BENCHMARKS, benchmark_pair
from vila2.world.captions import alt_text, describe
from vila2.world.mmmu import mmmu_questions, mmmu_row, write_mmmu
from vila2.world.render import png_bytes, render
from vila2.world.scene import Scene, sample_scene, scene_seed
from vila2.world.sizes import WorldSize, resolve_size
from vila2.world.stats import pretrain_stats

FORMAT = "vila2-world"
VERSION = 2  # 2: short domain questions in the SFT mix
PRODUCER = "vila2.world"
SHARD_SIZE = 1000
PRETRAIN_WORD_RATE = 0.3
OCR_WORD_RATE = 0.9  # some OCR training images have no text, so "none" is a learnt answer
_PARTIAL = ".partial"


@dataclass
class Record:
    """One image of a dataset and its row in each layer (``{"text", "prompt", "meta"}``)."""

    id: str
    png: bytes
    layers: dict[str, dict[str, Any]]


def _text_rng(scene: Scene) -> random.Random:
    return random.Random(f"{scene.seed}/text")


def _conversation_row(turns: list[dict[str, str]], **meta: Any) -> dict[str, Any]:
    return {"text": json.dumps(turns), "prompt": turns[0]["value"], "meta": meta}


class WorldWriter:
    """Builds the parts of one world into ``root``; a progress bar counts every image."""

    def __init__(self, root: Path, seed: int, size: WorldSize, image_size: int) -> None:
        from vila2.progress import progress_bar

        self.root, self.seed, self.size, self.image_size = root, seed, size, image_size
        self.train_hashes: set[bytes] = set()
        self.counts: dict[str, int] = {}
        total = (size.pretrain + size.seed + size.sft + size.spatial + size.grounding + size.ocr
                 + size.bench * len(BENCHMARKS) + size.mmmu)
        self.progress = progress_bar(total=total, desc="writing world", unit="img", disable=None)

    def scene(self, split: str, index: int, word_rate: float = PRETRAIN_WORD_RATE) -> Scene:
        """Scene ``index`` of ``split`` (its seed depends on the world seed, split and index)."""
        return sample_scene(scene_seed(self.seed, split, index), word_rate=word_rate)

    def png(self, scene: Scene, *, train: bool) -> bytes:
        """The rendered scene as PNG; training images are remembered by hash."""
        data = png_bytes(render(scene, self.image_size))
        if train:
            self.train_hashes.add(hashlib.sha1(data).digest())
        return data

    def write_dataset(self, name: str, records: Iterable[Record], layers: Mapping[str, str],
                      prompt_set: list[str] | None = None) -> None:
        """Write images, then one layer per entry of ``layers`` (name -> kind)."""
        from vila2.data import Dataset

        ds = Dataset.create(self.root / name)
        rows: dict[str, dict[str, dict[str, Any]]] = {layer: {} for layer in layers}
        with ds.writer(shard_size=SHARD_SIZE, source=f"world:{name}") as writer:
            for record in records:
                writer.add(record.id, record.png, self.image_size, self.image_size)
                for layer in layers:
                    rows[layer][record.id] = record.layers[layer]
                self.progress.update()
        settings = {"world_seed": self.seed, "image_size": self.image_size}
        for layer, kind in layers.items():
            out = ds.create_layer(layer, kind, producer=PRODUCER, prompt_set=prompt_set,
                                  settings=settings)
            for shard in out.pending_shards():
                out.write_shard(shard, [{"id": i, **rows[layer][i]} for i in ds.shard_ids(shard)])
        self.counts[name] = ds.num_samples

    # -- training sets ---------------------------------------------------------------------------
    def pretrain(self) -> dict[str, Any]:
        """``pretrain/``: images with their web alt-text (layer ``alt``); returns the statistics."""
        scenes, alts = [], []

        def records() -> Iterator[Record]:
            for i in range(self.size.pretrain):
                scene = self.scene("pretrain", i)
                alt = alt_text(scene, _text_rng(scene))
                scenes.append(scene)
                alts.append(alt)
                yield Record(f"pretrain-{i:06d}", self.png(scene, train=True), {"alt": {"text": alt}})

        self.write_dataset("pretrain", records(), {"alt": "caption"})
        return pretrain_stats(scenes, alts, [describe(s) for s in scenes])

    def sft(self) -> None:
        """``sft/``: the detailed-caption seed (pretraining images) and general VQA images (a share of
        them with one short domain question too); layer ``described`` holds the same conversations
        with a description turn on every VQA image."""
        chosen = sorted(random.Random(f"{self.seed}/seed").sample(range(self.size.pretrain), self.size.seed))

        def records() -> Iterator[Record]:
            for i in chosen:  # the detailed-caption seed: pretraining images, full descriptions
                scene = self.scene("pretrain", i)
                turns = conv.detail_conversation(scene, _text_rng(scene))
                row = _conversation_row(turns, task="detail")
                yield Record(f"seed-{i:06d}", self.png(scene, train=True), {"conversations": row, "described": row})
            for i in range(self.size.sft):
                scene = self.scene("sft", i)
                rng = _text_rng(scene)
                turns = conv.sft_conversation(scene, rng)
                # the same questions with a "describe in detail" turn added: what a starting point
                # that describes is warmed up on (SFT images only, never the pretraining split's)
                described = conv.with_description(turns, scene, rng)
                # a few conversations also ask a domain question (its own draw, so the rest of
                # the world does not move with the share)
                domain_rng = random.Random(f"{self.seed}/sft-domain/{i}")
                if domain_rng.random() < self.size.sft_domain_fraction:
                    pair = conv.domain_question(scene, domain_rng)
                    if pair is not None:
                        turns, described = conv.with_turn(turns, pair), conv.with_turn(described, pair)
                yield Record(f"sft-{i:06d}", self.png(scene, train=True),
                             {"conversations": _conversation_row(turns, task="vqa"),
                              "described": _conversation_row(described, task="vqa+detail")})

        self.write_dataset("sft", records(), {"conversations": "conversation", "described": "conversation"},
                           prompt_set=list(conv.DETAIL_PROMPTS))

    def domain(self, name: str, count: int, make: Callable[[Scene, random.Random], list[dict[str, str]]],
               prompt: str, word_rate: float = PRETRAIN_WORD_RATE) -> None:
        """A domain SFT set (``spatial/``, ``grounding/``, ``ocr/``) of ``count`` images."""
        def records() -> Iterator[Record]:
            for i in range(count):
                scene = self.scene(name, i, word_rate)
                turns = make(scene, _text_rng(scene))
                yield Record(f"{name}-{i:06d}", self.png(scene, train=True),
                             {"conversations": _conversation_row(turns, task=name)})

        self.write_dataset(name, records(), {"conversations": "conversation"}, prompt_set=[prompt])

    # -- held-out benchmarks ---------------------------------------------------------------------
    def held_out(self, split: str, word_rate: float, min_objects: int = 1) -> Iterator[tuple[Scene, bytes]]:
        """Scenes of ``split`` whose image is no training image, forever."""
        index = 0
        while True:
            scene = self.scene(split, index, word_rate)
            index += 1
            if len(scene.objects) < min_objects:
                continue
            data = self.png(scene, train=False)
            if hashlib.sha1(data).digest() not in self.train_hashes:
                yield scene, data

    def benchmark(self, name: str) -> None:
        """``bench/<name>/``: one question per held-out image, plus its scene (layer ``truth``)."""
        bench = BENCHMARKS[name]
        scenes = self.held_out(f"bench-{name}", bench.word_rate, bench.min_objects)

        def records() -> Iterator[Record]:
            for i in range(self.size.bench):
                scene, data = next(scenes)
                kind, pair = benchmark_pair(bench, scene, _text_rng(scene), i)
                yield Record(f"{name}-{i:05d}", data, {
                    "conversations": _conversation_row(conv.turns([pair]), kind=kind),
                    "truth": {"text": json.dumps(scene.to_dict())},
                })

        self.write_dataset(f"bench/{name}", records(), {"conversations": "conversation", "truth": "caption"})

    def mmmu(self) -> None:
        """``bench/mmmu/validation.parquet`` from held-out images."""
        scenes = self.held_out("bench-mmmu", 0.4)
        pngs: dict[int, bytes] = {}

        def next_scene() -> Scene:
            scene, data = next(scenes)
            pngs[scene.seed] = data
            return scene

        rows = []
        for i, (shown, question) in enumerate(
            mmmu_questions(next_scene, self.size.mmmu, random.Random(f"{self.seed}/mmmu"))
        ):
            rows.append(mmmu_row(i, question, [pngs[s.seed] for s in shown]))
            self.progress.update()
        write_mmmu(self.root / "bench" / "mmmu" / "validation.parquet", rows)
        self.counts["bench/mmmu"] = len(rows)


def _config(seed: int, size: str | int, world_size: WorldSize, image_size: int) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "seed": seed, "size": str(size),
            "sizes": world_size.to_dict(), "image_size": image_size}


def write_world(out: str | os.PathLike[str], *, seed: int = 0, size: str | int = "default",
                image_size: int = 64) -> Path:
    """Write the embedded world to ``out`` and return its path.

    ``size`` is ``"tiny"`` (a few seconds; tests), ``"demo"``, ``"default"`` or a number of
    pretraining images (see :mod:`vila2.world.sizes`). A finished world with the same settings
    is returned untouched; one with other settings, or a folder holding anything else, is an
    error.
    """
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    root = Path(out)
    world_size = resolve_size(size)
    config = _config(seed, size, world_size, image_size)
    info_path = root / "world.json"
    if info_path.is_file():
        existing = json.loads(info_path.read_text())
        if any(existing.get(k) != v for k, v in config.items() if k != "size"):
            raise ValueError(
                f"{root} already holds a world written with other settings "
                f"(seed {existing.get('seed')}, size {existing.get('size')}, image size "
                f"{existing.get('image_size')}); choose another folder"
            )
        return root
    if root.exists() and any(p.name != _PARTIAL for p in root.iterdir()):
        raise ValueError(f"{root} is not empty and holds no world (world.json); choose an empty folder")
    partial = root / _PARTIAL
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)

    writer = WorldWriter(partial, seed, world_size, image_size)
    try:
        pretrain = writer.pretrain()
        writer.sft()
        writer.domain("spatial", writer.size.spatial, conv.spatial_conversation, conv.SPATIAL_PROMPT)
        writer.domain("grounding", writer.size.grounding, conv.grounding_conversation,
                      conv.GROUNDING_PROMPT)
        writer.domain("ocr", writer.size.ocr, conv.ocr_conversation, conv.OCR_PROMPT, OCR_WORD_RATE)
        for name in BENCHMARKS:
            writer.benchmark(name)
        writer.mmmu()
    finally:
        writer.progress.close()

    for child in partial.iterdir():
        child.rename(root / child.name)
    partial.rmdir()
    info = {**config, "stats": {"pretrain": pretrain, "datasets": writer.counts}}
    tmp = root / "world.json.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(info_path)
    return root
