"""Ingest: bring an external corpus into a dataset, checking every image and caption on the way.

``ingest(src, out)`` reads WebDataset tars, LLaVA JSON + images, Parquet / HF ``datasets``
folders or a plain image folder (see :mod:`vila2.data.sources`), and writes image shards plus
a caption layer (``original`` unless named) and/or a conversation layer ``conversations``.
Every input that is skipped or changed gets a line in ``rejects.jsonl``; nothing is written
outside ``out``.

A rerun after a kill resumes: each committed shard records how many source candidates had been
consumed and how long ``rejects.jsonl`` was, so the rerun skips exactly that prefix of the
source and cuts the rejects file back to it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vila2.data import manifest
from vila2.data.image import DEFAULT_MAX_PIXELS, check_image
from vila2.data.layer import LayerWriter, check_layer_name
from vila2.data.rejects import NAME as REJECTS
from vila2.data.rejects import RejectLog, read_counts
from vila2.data.sources import Candidate, Source, detect_format, open_source
from vila2.data.store import Dataset, ImageWriter
from vila2.errors import BadImage, StoreError

CAPTION_LAYER = "original"
CONVERSATION_LAYER = "conversations"
_ROLES = {"human", "gpt", "system"}


@dataclass
class IngestReport:
    """What an ingest did. ``counts`` is ``{action: {reason: n}}`` (see ``rejects.jsonl``)."""

    src: str
    out: str
    format: str
    kept: int
    shards: int
    layers: list[str]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    resumed: bool = False

    @property
    def rejected(self) -> int:
        """Inputs skipped entirely."""
        return sum(self.counts.get("rejected", {}).values())

    @property
    def normalised(self) -> int:
        """Images kept after conversion."""
        return sum(self.counts.get("normalised", {}).values())

    @property
    def texts_dropped(self) -> int:
        """Images kept whose caption/conversation was not."""
        return sum(self.counts.get("text dropped", {}).values())

    def summary(self) -> str:
        """A few lines for the terminal."""
        resumed = " (resumed)" if self.resumed else ""
        lines = [f"ingested {self.kept} samples from {self.src} [{self.format}] into {self.out}: "
                 f"{self.shards} shards, layers {', '.join(self.layers) or 'none'}, "
                 f"{self.seconds:.1f} s{resumed}"]
        for action, total in (("rejected", self.rejected), ("normalised", self.normalised),
                              ("text dropped", self.texts_dropped)):
            if total:
                reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.counts[action].items()))
                lines.append(f"  {action}: {total} ({reasons})")
        if self.rejected or self.normalised or self.texts_dropped:
            lines.append(f"  details: {Path(self.out) / REJECTS}")
        return "\n".join(lines)


def _caption(raw: Any) -> tuple[str | None, tuple[str, str] | None]:
    if isinstance(raw, (list, tuple)):  # several captions per image (COCO-style): the first
        raw = next((r for r in raw if isinstance(r, (str, bytes)) and r.strip()), None)
    if raw is None:
        return None, ("missing caption", "no caption in the source")
    if not isinstance(raw, (str, bytes)):
        return None, ("bad caption", f"{type(raw).__name__}, not text")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return None, ("caption not UTF-8", str(exc))
    text = raw.strip()
    if not text:
        return None, ("empty caption", "caption is blank")
    return text, None


def _conversation(value: Any) -> tuple[str | None, tuple[str, str] | None, bool]:
    """``(json text, problem, image token added)`` for a LLaVA turn list."""
    if not isinstance(value, list) or not value:
        return None, ("bad conversations", f"expected a non-empty list, got {type(value).__name__}"), False
    turns = []
    for i, turn in enumerate(value):
        if (not isinstance(turn, dict) or turn.get("from") not in _ROLES
                or not isinstance(turn.get("value"), str)):
            return None, ("bad conversations", f"turn {i} is not {{'from': human|gpt, 'value': str}}"), False
        turns.append({"from": turn["from"], "value": turn["value"]})
    humans = [t for t in turns if t["from"] == "human"]
    if not humans or not any(t["from"] == "gpt" for t in turns):
        return None, ("bad conversations", "needs a human and a gpt turn"), False
    added = not any("<image>" in t["value"] for t in humans)
    if added:
        humans[0]["value"] = "<image>\n" + humans[0]["value"]
    return json.dumps(turns, ensure_ascii=False), None, added


def _settings(src: Path, fmt: str, options: Mapping[str, Any]) -> dict[str, Any]:
    return {"src": str(src.resolve()), "format": fmt,
            **{k: str(v) if isinstance(v, Path) else v for k, v in options.items()}}


def ingest(
    src: str | Path,
    out: str | Path,
    format: str = "auto",
    *,
    shard_size: int = 1000,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    image_root: str | Path | None = None,
    image_column: str | None = None,
    caption_column: str | None = None,
    id_column: str | None = None,
    caption_layer: str = CAPTION_LAYER,
    progress: bool = True,
) -> IngestReport:
    """Ingest ``src`` into the dataset folder ``out`` (new, or an interrupted ingest of ``src``).

    ``format``: ``auto``, ``webdataset``, ``llava``, ``parquet`` or ``folder``. ``image_root``:
    where LLaVA / Parquet image paths are relative to. ``*_column``: Parquet column names when
    the usual ones do not match. Images over ``max_pixels`` are refused as decompression bombs.
    Captions go to the caption layer ``caption_layer`` (``original`` unless named), LLaVA
    conversations to the conversation layer ``conversations``.
    """
    started = time.perf_counter()
    src, out = Path(src), Path(out)
    if not src.exists():
        raise StoreError(f"{src} does not exist")
    if out.resolve().is_relative_to(src.resolve()) or src.resolve().is_relative_to(out.resolve()):
        raise StoreError(f"--out {out} must not be inside the source {src} (or contain it)")
    check_layer_name(caption_layer)
    fmt = detect_format(src) if format == "auto" else format
    options = {k: v for k, v in {"image_root": image_root, "image_column": image_column,
                                 "caption_column": caption_column, "id_column": id_column}.items()
               if v is not None}
    try:
        source = open_source(src, fmt, **options)
    except TypeError as exc:
        raise StoreError(f"an option does not apply to format {fmt!r}: {exc}") from None
    settings = _settings(src, fmt, {**options, "shard_size": shard_size, "max_pixels": max_pixels,
                                    "caption_layer": caption_layer})
    ds = Dataset.create(out, max_pixels=max_pixels)
    state = ds.manifest.get("ingest")
    if state is None and (ds.shards() or ds.layers()):
        raise StoreError(f"{out} already holds a dataset that was not made by ingest; "
                         "ingest into a new folder")
    if state is not None and state["settings"] != settings:
        raise StoreError(f"{out} holds an ingest with other settings "
                         f"({json.dumps(state['settings'])}); use a new --out or the same ones")
    resumed = state is not None
    if state is None or not state.get("complete"):
        _run(ds, source, settings, shard_size, max_pixels, progress)
    ds.refresh()
    return IngestReport(
        src=str(src), out=str(out), format=fmt, kept=ds.num_samples, shards=len(ds.shards()),
        layers=ds.layers(), counts=read_counts(ds.path / REJECTS), seconds=time.perf_counter() - started,
        resumed=resumed,
    )


def _run(ds: Dataset, source: Source, settings: dict[str, Any], shard_size: int,
         max_pixels: int, progress: bool) -> None:
    from vila2.progress import progress_bar

    def begin(value: dict[str, Any]) -> None:
        value.setdefault("ingest", {"settings": settings, "complete": False, "consumed": 0,
                                    "rejects_bytes": 0})

    manifest.update(ds.path, begin)
    ds.refresh()
    provenance = {"producer": "ingest", "settings": settings}
    writers: dict[str, LayerWriter] = {}  # by layer kind
    if source.captions:
        writers["caption"] = ds.create_layer(settings["caption_layer"], "caption", **provenance)
    if source.conversations:
        writers["conversation"] = ds.create_layer(CONVERSATION_LAYER, "conversation",
                                                  **provenance)
    entries = ds.manifest["shards"]
    consumed = entries[-1]["ingest"]["consumed"] if entries else 0
    log = RejectLog(ds.path / REJECTS,
                    keep_bytes=entries[-1]["ingest"]["rejects_bytes"] if entries else 0)
    pending: dict[str, list[dict[str, Any]]] = {name: [] for name in writers}
    position = 0

    def on_shard(name: str, ids: list[str]) -> dict[str, Any]:
        for kind, writer in writers.items():
            rows, pending[kind] = pending[kind], []
            writer.write_shard(name, rows)
        return {"ingest": {"consumed": position, "rejects_bytes": log.offset}}

    bar = progress_bar(total=source.total, unit="sample", desc=f"ingest {source.format}",
                       disable=not progress)
    try:
        with ds.writer(shard_size=shard_size, source=settings["src"], on_shard=on_shard) as out:
            for index, candidate in enumerate(source):
                bar.update(1)
                if index < consumed:
                    continue  # stored by the interrupted run
                position = index + 1
                _one(candidate, out, writers, pending, log, max_pixels)
        bar.close()

        def finish(value: dict[str, Any]) -> None:
            value["ingest"].update(complete=True, consumed=position or consumed,
                                   rejects_bytes=log.offset)

        manifest.update(ds.path, finish)
    finally:
        log.close()


def _one(candidate: Candidate, out: ImageWriter, writers: Mapping[str, LayerWriter],
         pending: dict[str, list[dict[str, Any]]], log: RejectLog, max_pixels: int) -> None:
    where, ident = candidate.where, candidate.id
    if candidate.problem is not None:
        log.add(where, ident, *candidate.problem)
        return
    if not ident:
        log.add(where, None, "missing id", "the source gives no id")
        return
    try:
        ident.encode("utf-8")
    except UnicodeEncodeError as exc:
        log.add(where, ident, "id not UTF-8", str(exc))
        return
    if ident in out:
        log.add(where, ident, "duplicate id", "an earlier sample has this id")
        return
    try:
        image = check_image(candidate.image or b"", max_pixels)
    except BadImage as exc:
        log.add(where, ident, exc.reason, exc.detail)
        return
    if image.normalised is not None:
        log.add(where, ident, *image.normalised, action="normalised")
    meta = candidate.meta
    if "caption" in writers:
        text, problem = _caption(candidate.caption)
        if problem is not None:
            log.add(where, ident, *problem, action="text dropped")
        pending["caption"].append({"id": ident, "text": text or "", "kept": text is not None,
                                       "meta": {**meta, **({"dropped": problem[0]} if problem else {})}})
    if "conversation" in writers:
        turns, problem, added = _conversation(candidate.conversations)
        if problem is not None:
            log.add(where, ident, *problem, action="text dropped")
        elif added:
            log.add(where, ident, "no image token", "added <image> to the first human turn",
                    action="normalised")
        pending["conversation"].append({"id": ident, "text": turns or "",
                                        "kept": turns is not None,
                                        "meta": {} if "caption" in writers else meta})
    out.add(ident, image.data, image.width, image.height, source=candidate.origin or where)
