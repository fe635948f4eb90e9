"""``report.html``: a self-contained gallery of what the loop does to the data.

A few pretraining images (embedded as base64 PNG, so the file can be mailed or archived alone),
each with every caption layer a model was trained on: the alt-text, every round's recaption and
every specialist's answer. Where the images are the embedded world's, each object mention is
marked against the ground-truth scene (right in green, wrong in red) and the objects a caption
leaves out are listed. The layers come from the report rows' caption statistics
(:func:`vila2.pipeline.report.collect`), so the gallery shows exactly the layers the report counts.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: how many pretraining images the gallery shows
GALLERY_IMAGES = 8
#: the longest side of an embedded image, in pixels (larger images are shrunk; smaller ones are
#: shown enlarged by the browser, pixelated, so small world images stay sharp)
MAX_SIDE = 256
SHOWN_SIDE = 192

_STYLE = f"""
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 70em; }}
.card {{ display: flex; gap: 1.5em; border-top: 1px solid #ccc; padding: 1em 0; }}
.card img {{ width: {SHOWN_SIDE}px; height: {SHOWN_SIDE}px; object-fit: contain; image-rendering: pixelated;
            border: 1px solid #ddd; flex: none; }}
""" + """
.layers { flex: 1; }
.layer { margin: 0 0 .7em 0; }
.label { font-weight: 600; font-size: .85em; color: #555; }
.prompt { font-size: .85em; color: #777; font-style: italic; }
.ok { background: #d4f4d4; color: #075e07; border-radius: 3px; }
.bad { background: #fbd3d3; color: #8f0b0b; border-radius: 3px; text-decoration: line-through; }
.missed { font-size: .85em; color: #8a6d00; }
.dropped { color: #999; }
.truth { font-size: .85em; color: #555; margin-bottom: .7em; }
"""


@dataclass(frozen=True)
class GalleryLayer:
    """One caption layer shown for every image: its label and where it lives."""

    label: str
    dataset: Path
    layer: str
    world: Path | None
    show_prompt: bool = False  # a specialist's answer only makes sense next to its question


def gallery_layers(root: Path, results: Mapping[str, Any]) -> list[GalleryLayer]:
    """The caption layers of the report's rows (``caption_quality``: layer, dataset, world), in
    row order: round 0's alt-text, each round's recaption, each specialist's answers."""
    layers = []
    for row in results.get("rows", []):
        q = row.get("caption_quality") or {}
        if not q.get("layer") or not q.get("dataset"):
            continue
        if row["kind"] == "round":
            label = "alt-text (round 0 trains on it)" if row.get("round") == 0 else (
                f"round {row['round'] - 1} recaption (round {row['round']} trains on it)")
        elif row["kind"] == "specialist":
            label = f"{row.get('specialist')} specialist's answer (the final model trains on it)"
        else:
            label = row["name"]
        world = root / q["world"] if q.get("world") else None
        layers.append(GalleryLayer(label, root / q["dataset"], q["layer"], world,
                                   show_prompt=row["kind"] == "specialist"))
    return layers


def _png_data_uri(image: Any) -> str:
    """A PIL image as a ``data:image/png;base64,...`` URI (shrunk to :data:`MAX_SIDE`)."""
    image = image.copy()
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def marked(text: str, scene: Any | None) -> str:
    """``text`` as HTML, each object mention wrapped in ``<span class="ok">`` (an object of the
    scene) or ``<span class="bad">`` (none); plain escaped text without a scene."""
    from vila2.world.scoring import hallucinated, mention_spans

    if scene is None:
        return html.escape(text)
    out, at = [], 0
    for start, end, mention in mention_spans(text):
        kind = "bad" if hallucinated({mention}, scene) else "ok"
        out += [html.escape(text[at:start]), f'<span class="{kind}">{html.escape(text[start:end])}</span>']
        at = end
    out.append(html.escape(text[at:]))
    return "".join(out)


def _missed(text: str, scene: Any) -> list[str]:
    """The scene's objects the text does not name with their colour and shape."""
    from vila2.world.scoring import mentions

    found = mentions(text)
    return [o.name for o in scene.objects if (o.color, o.shape) not in found]


def _samples(dataset: Any, count: int) -> tuple[list[dict[str, Any]], list[str]]:
    """The first ``count`` samples of ``dataset`` and the shards they are in."""
    chosen: list[dict[str, Any]] = []
    shards: list[str] = []
    for shard in dataset.shards():
        shards.append(shard)
        for sample in dataset.iter_samples(shards=[shard]):
            chosen.append(sample)
            if len(chosen) == count:
                return chosen, shards
    return chosen, shards


def _rows(dataset: Any, layer: str, shards: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{id: layer row}`` of ``layer`` in ``shards``; empty when the layer is gone or unfinished
    (a run folder whose layer was deleted still gets its gallery, without that layer)."""
    if layer not in dataset.layers():
        return {}
    try:
        return {row["id"]: row for row in dataset.layer(layer).iter_rows(shards)}
    except (OSError, ValueError):
        return {}


def render_gallery(title: str, layers: Sequence[GalleryLayer], count: int = GALLERY_IMAGES) -> str:
    """The gallery's HTML (see the module docstring)."""
    from vila2.data import Dataset
    from vila2.world.quality import PretrainTruth

    dataset_path = layers[0].dataset
    shown = [layer for layer in layers if layer.dataset == dataset_path]
    ds = Dataset.open(dataset_path)
    samples, shards = _samples(ds, count)
    rows = {layer.layer: _rows(ds, layer.layer, shards) for layer in shown}
    world = next((layer.world for layer in shown if layer.world is not None), None)
    truth = PretrainTruth(world) if world is not None and (world / "world.json").is_file() else None
    problem = truth.check(ds) if truth is not None else "the images are not the embedded world's"
    if problem is not None:
        truth = None

    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}: caption gallery</title>", f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}: what the loop does to the captions</h1>",
        f"<p>The first {len(samples)} pretraining images of <code>{html.escape(str(dataset_path.name))}</code>, "
        "each with every caption layer a model was trained on. ",
    ]
    if truth is not None:
        parts.append('Object mentions are marked against the ground-truth scene: '
                     '<span class="ok">right</span>, <span class="bad">no such object</span>; '
                     '<span class="missed">missed</span> lists the objects a caption leaves out.</p>')
    else:
        parts.append(f"No ground truth ({html.escape(problem or '')}): captions are shown as written.</p>")
    for sample in samples:
        scene = truth.scene(sample["id"]) if truth is not None else None
        parts.append('<div class="card">')
        parts.append(f'<img alt="{html.escape(sample["id"])}" src="{_png_data_uri(ds.load_image(sample))}">')
        parts.append(f'<div class="layers"><div class="label">{html.escape(sample["id"])}</div>')
        if scene is not None:
            objects = ", ".join(o.name for o in scene.objects)
            word = f'; the word "{html.escape(scene.word)}"' if scene.word else ""
            parts.append(f'<div class="truth">ground truth: {html.escape(objects)}{word}</div>')
        for layer in shown:
            row = rows[layer.layer].get(sample["id"])
            parts.append(f'<div class="layer"><div class="label">{html.escape(layer.label)}</div>')
            if row is None:
                parts.append('<div class="dropped">(no caption in this layer)</div></div>')
                continue
            text = row.get("text") or ""
            prompt = row.get("prompt") or ""
            if prompt and layer.show_prompt:
                parts.append(f'<div class="prompt">{html.escape(prompt)}</div>')
            note = "" if row.get("kept", True) else ' <span class="dropped">(filtered out: not trained on)</span>'
            parts.append(f"<div>{marked(text, scene)}{note}</div>")
            if scene is not None and not layer.show_prompt:  # an answer to one question misses by design
                missed = _missed(text, scene)
                if missed:
                    parts.append(f'<div class="missed">missed: {html.escape(", ".join(missed))}</div>')
            parts.append("</div>")
        parts.append("</div></div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_gallery(root: str | Path, results: Mapping[str, Any], out: str | Path,
                  count: int = GALLERY_IMAGES) -> Path | None:
    """Write the gallery of the run in ``root`` to ``out``; ``None`` (and nothing written) when
    the results name no caption layer of the pretraining images."""
    root = Path(root)
    layers = [layer for layer in gallery_layers(root, results) if (layer.dataset / "manifest.json").is_file()]
    if not layers:
        return None
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(render_gallery(str(results.get("name", "run")), layers, count), encoding="utf-8")
    tmp.replace(out)
    return out


__all__ = ["GALLERY_IMAGES", "GalleryLayer", "gallery_layers", "marked", "render_gallery", "write_gallery"]
