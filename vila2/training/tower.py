"""The starting point's eyes: a tiny SigLIP vision tower pretrained on world images of its own.

A random tower trained only through a 2-layer language model barely learns to look (docs/DEMO.md:
held-out loss with the right and with shuffled images is nearly equal). A real VILA² run starts
from a pretrained vision tower; this module builds the stand-in for one. It renders world scenes
from a split no other part of the world uses (:data:`TOWER_SPLIT`, under its own world seed
:data:`TOWER_WORLD_SEED`), and trains an ordinary ``SiglipVisionModel`` — the very tower of the
``llava-tiny`` preset, single patch-embedding conv included — to predict, for every patch cell,
dense labels read off the ground-truth scene:

* the colour, shape and size class of the object covering the cell (or "none"),
* whether the cell holds an object's centre (so objects can be told apart and counted),
* whether the written word covers the cell, and the background colour,
* the cell's own row and column (keeps position in the features the projector sees);
* with ``read_text``, also which word covers the cell and which of its letters stands over the
  cell's centre, as a real SigLIP reads text (at the preset's width of 64 the words are not
  learned, at 128 most are: ``benchmarks/tower_reading.py``, benchmarks/RESULTS.md).

With ``feature_norm``, the frozen tower's output is rescaled after training to that mean norm
(exactly: every write into the residual stream is scaled, and the layer norms inside do not
see the scale). A 128-wide tower's larger features kept the starting point from learning
colour; at the 64-wide tower's norm it learns it. The shipped tower uses neither (its settings
are the defaults).

The heads read the last encoder layer *before* the post-layernorm: that is the feature LLaVA's
projector takes (``vision_feature_layer=-1``). Only the tower's weights are written
(``tower.safetensors``, under 1 MB at the preset sizes) with ``tower.json`` (sizes, settings,
the split and the probe accuracies); :func:`build_with_tower` builds a preset folder and puts
them in, so the result is still a plain Hugging Face folder loaded by
``AutoModelForImageTextToText.from_pretrained``::

    from vila2.training.tower import TowerSettings, build_with_tower, pretrain_tower
    pretrain_tower("out/tower", TowerSettings())   # 186 s on one free core (12,000 images, 3,000 steps)
    build_with_tower("llava-tiny", "out/base", "out/tower", texts=texts)

The images the tower sees are checked against every split of the world it is built for
(:func:`check_disjoint`): none of their scene seeds is a pretraining, SFT, domain or benchmark
scene seed.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vila2.world.benchmarks import BENCHMARKS
from vila2.world.render import _draw_object, _font, font_size, render
from vila2.world.scene import (
    BACKGROUNDS,
    COLORS,
    SHAPES,
    SIZES,
    WORDS,
    Scene,
    sample_scene,
    scene_seed,
)
from vila2.world.sizes import resolve_size

#: The split name and world seed the tower's scenes are drawn from: no world uses either.
TOWER_SPLIT = "tower-pretrain"
TOWER_WORLD_SEED = 0x70E5
WEIGHTS = "tower.safetensors"
INFO = "tower.json"
_SUPERSAMPLE = 4
_MIN_COVER = 0.15  # an object labels a cell when it covers at least this share of it
_MIN_TEXT_COVER = 0.25
#: the letters of the world's words, in a fixed order (class ``i + 1``; 0 is "no letter")
LETTERS = "".join(sorted(set("".join(WORDS))))
_GLYPH_HALF_HEIGHT = 4  # pixels above and below the text's centre line that hold its letters


@dataclass(frozen=True)
class TowerSettings:
    """Sizes of the tower (the ``llava-tiny`` size names) and how it is trained.

    The defaults are the shipped tower: the ``llava-tiny`` tower with 8-px patches (64 cells per
    64x64 image) and a run of about 4 minutes on one core; :meth:`short` is a seconds-long run
    for tests. A reading tower is ``vision_hidden_size=128, vision_intermediate_size=256,
    word_rate=0.5, read_text=True, feature_norm=36.6`` (``benchmarks/tower_reading.py``).
    """

    vision_hidden_size: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    vision_intermediate_size: int = 128
    image_size: int = 64
    patch_size: int = 8
    images: int = 12000
    steps: int = 3000
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    word_rate: float = 0.3
    seed: int = 0
    # also predict the word and letters over each cell (see the module docstring)
    read_text: bool = False
    # mean norm of the features the connector sees, set after training (None: as trained); 36.6 is
    # the 64-wide tower's, at which the starting point learns colour within 800 steps
    feature_norm: float | None = None
    # "hidden": the last encoder layer before the post-layernorm (what LLaVA's projector takes,
    # ``vision_feature_layer=-1``); "normed": after it (Idefics3's pixel-shuffle connector)
    feature: str = "hidden"

    @classmethod
    def short(cls, **changes: Any) -> TowerSettings:
        """A run of a few seconds (tests): few images, few steps."""
        return cls(**{"images": 256, "steps": 40, "batch_size": 32, **changes})

    def sizes(self) -> dict[str, int]:
        """The preset size overrides this tower fits (see :data:`vila2.models.presets.DEFAULT_SIZES`)."""
        return {k: getattr(self, k) for k in ("vision_hidden_size", "vision_layers", "vision_heads",
                                               "vision_intermediate_size", "image_size", "patch_size")}


# -- labels --------------------------------------------------------------------------------------
#: Dense targets, each a classification per cell: name -> number of classes (None: the grid side).
TARGETS: dict[str, int | None] = {
    "color": len(COLORS) + 1,
    "shape": len(SHAPES) + 1,
    "size": len(SIZES) + 1,
    "center": 2,
    "text": 2,
    "background": len(BACKGROUNDS),
    "row": None,
    "col": None,
}
#: What a tower trained with ``read_text`` also predicts: the word over the cell, and the letter
#: over its centre. A mirrored image is not asked them (a flipped word is text, not that word).
READING_TARGETS: dict[str, int | None] = {"word": len(WORDS) + 1, "letter": len(LETTERS) + 1}


def targets(settings: TowerSettings) -> dict[str, int | None]:
    """The dense targets a tower with ``settings`` is trained on."""
    return {**TARGETS, **READING_TARGETS} if settings.read_text else dict(TARGETS)


def tower_scene(index: int, word_rate: float = 0.3) -> Scene:
    """Scene ``index`` of the tower's own split."""
    return sample_scene(scene_seed(TOWER_WORLD_SEED, TOWER_SPLIT, index), word_rate=word_rate)


def cell_labels(scene: Scene, image_size: int, patch_size: int, *, read_text: bool = False) -> dict[str, list[int]]:
    """Per-cell labels of a scene (row-major, ``(image_size // patch_size) ** 2`` cells each).

    Objects are drawn into an id mask at 4x; a cell takes the object covering the largest share
    of it when that share is at least 15 %, else "none" (class 0).
    """
    from PIL import Image, ImageDraw

    side = image_size // patch_size
    big = image_size * _SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    for k, obj in enumerate(scene.objects):
        _draw_object(draw, obj, big / 1000, k + 1)  # type: ignore[arg-type]
    pixels = mask.load()
    cell = patch_size * _SUPERSAMPLE
    labels: dict[str, list[int]] = {name: [] for name in TARGETS}
    if read_text:
        labels.update({name: [] for name in READING_TARGETS})
    centers = {
        (min(side - 1, int(o.center[1] / 1000 * side)), min(side - 1, int(o.center[0] / 1000 * side)))
        for o in scene.objects
    }
    background = BACKGROUNDS.index(scene.background)
    letters = _letter_cells(scene, image_size, patch_size) if read_text else {}
    for row in range(side):
        for col in range(side):
            counts = [0] * (len(scene.objects) + 1)
            for y in range(row * cell, (row + 1) * cell, 2):  # every other pixel: plenty at 4x
                for x in range(col * cell, (col + 1) * cell, 2):
                    counts[pixels[x, y]] += 1  # type: ignore[index]
            total = (cell // 2) ** 2
            best = max(range(1, len(counts)), key=lambda k: counts[k], default=0)
            obj = scene.objects[best - 1] if best and counts[best] >= _MIN_COVER * total else None
            labels["color"].append(COLORS.index(obj.color) + 1 if obj else 0)
            labels["shape"].append(SHAPES.index(obj.shape) + 1 if obj else 0)
            labels["size"].append(SIZES.index(obj.size) + 1 if obj else 0)
            labels["center"].append(int((row, col) in centers))
            on_text = _text_cover(scene, row, col, side) >= _MIN_TEXT_COVER
            labels["text"].append(int(on_text))
            if read_text:
                labels["word"].append(WORDS.index(scene.word) + 1 if on_text and scene.word else 0)
                labels["letter"].append(letters.get((row, col), 0))
            labels["background"].append(background)
            labels["row"].append(row)
            labels["col"].append(col)
    return labels


def _letter_cells(scene: Scene, image_size: int, patch_size: int) -> dict[tuple[int, int], int]:
    """``(row, col) -> letter class`` for the cells whose centre column falls inside a letter of
    the written word (measured with the font :func:`vila2.world.render.render` draws it in) and
    whose rows overlap the text's centre line."""
    if not (scene.word and scene.word_box):
        return {}
    font = _font(font_size(image_size))
    scale = image_size / 1000
    x0, y0, x1, y1 = (v * scale for v in scene.word_box)
    left, middle = (x0 + x1) / 2 - font.getlength(scene.word) / 2, (y0 + y1) / 2
    edges = [left + font.getlength(scene.word[:i]) for i in range(len(scene.word) + 1)]
    cells: dict[tuple[int, int], int] = {}
    side = image_size // patch_size
    for row in range(side):
        if not (row * patch_size < middle + _GLYPH_HALF_HEIGHT and (row + 1) * patch_size > middle - _GLYPH_HALF_HEIGHT):
            continue
        for col in range(side):
            x = (col + 0.5) * patch_size
            for i, letter in enumerate(scene.word):
                if edges[i] <= x < edges[i + 1]:
                    cells[(row, col)] = LETTERS.index(letter) + 1
    return cells


def _text_cover(scene: Scene, row: int, col: int, side: int) -> float:
    if not (scene.word and scene.word_box):
        return 0.0
    x0, y0, x1, y1 = (v / 1000 * side for v in scene.word_box)
    w = max(0.0, min(x1, col + 1) - max(x0, col))
    h = max(0.0, min(y1, row + 1) - max(y0, row))
    return w * h


# -- disjointness --------------------------------------------------------------------------------
def world_seeds(world_seed: int, size: str | int, margin: int = 4) -> set[int]:
    """Every scene seed the world ``(world_seed, size)`` can use, benchmarks with ``margin``-fold
    room for the images the held-out filter skips."""
    sizes = resolve_size(size)
    counts = {"pretrain": sizes.pretrain, "sft": sizes.sft, "spatial": sizes.spatial,
              "grounding": sizes.grounding, "ocr": sizes.ocr,
              "bench-mmmu": margin * 4 * sizes.mmmu,
              **{f"bench-{name}": margin * sizes.bench for name in BENCHMARKS}}
    return {scene_seed(world_seed, split, i) for split, n in counts.items() for i in range(n)}


def check_scenes_disjoint(mine: set[int], world_seed: int, size: str | int, owner: str) -> None:
    """Raise unless no scene seed of ``mine`` (the scenes ``owner`` learned from) is one the
    world ``(world_seed, size)`` can use."""
    shared = mine & world_seeds(world_seed, size)
    if shared:
        raise AssertionError(f"{len(shared)} scene(s) of {owner} are also scenes of world {world_seed}/{size}")


def check_disjoint(count: int, world_seed: int = 0, size: str | int = "default") -> None:
    """Raise unless the tower's first ``count`` scene seeds avoid every seed of the world."""
    if world_seed == TOWER_WORLD_SEED:
        raise ValueError(f"world seed {world_seed} is the tower's own seed; choose another")
    check_scenes_disjoint({scene_seed(TOWER_WORLD_SEED, TOWER_SPLIT, i) for i in range(count)}, world_seed, size,
                          "the tower")


# -- the model -----------------------------------------------------------------------------------
def _vision_config(settings: TowerSettings) -> Any:
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(
        hidden_size=settings.vision_hidden_size,
        intermediate_size=settings.vision_intermediate_size,
        num_hidden_layers=settings.vision_layers,
        num_attention_heads=settings.vision_heads,
        image_size=settings.image_size,
        patch_size=settings.patch_size,
    )


def pixel_tensor(images: list[Any]) -> Any:
    """RGB images -> SigLIP's input: ``(pixel / 255 - 0.5) / 0.5`` (the preset processor's
    normalisation; 64x64 images are not resized)."""
    import numpy as np
    import torch

    array = np.stack([np.asarray(img.convert("RGB"), dtype=np.float32) for img in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2).div(127.5).sub(1.0)


def _dataset(settings: TowerSettings, start: int, count: int) -> tuple[Any, dict[str, Any]]:
    import torch

    images, labels = [], {name: [] for name in targets(settings)}
    for i in range(start, start + count):
        scene = tower_scene(i, settings.word_rate)
        images.append(render(scene, settings.image_size))
        for name, values in cell_labels(scene, settings.image_size, settings.patch_size,
                                        read_text=settings.read_text).items():
            labels[name].append(values)
    pixels = pixel_tensor(images)
    return pixels, {name: torch.tensor(v, dtype=torch.long) for name, v in labels.items()}


def _heads(hidden: int, side: int, wanted: dict[str, int | None]) -> Any:
    """Linear heads over the cell features, one per target."""
    import torch

    return torch.nn.ModuleDict({name: torch.nn.Linear(hidden, classes or side) for name, classes in wanted.items()})


def features(tower: Any, pixels: Any, feature: str = "hidden") -> Any:
    """What the connector sees: the last encoder layer before the post-layernorm (``hidden``,
    LLaVA with ``vision_feature_layer=-1``) or after it (``normed``, Idefics3)."""
    out = tower(pixel_values=pixels, output_hidden_states=True)
    if feature == "normed":
        return out.last_hidden_state
    if feature == "hidden":
        return out.hidden_states[-1]
    raise ValueError(f"unknown feature {feature!r}: use 'hidden' or 'normed'")


def _accuracies(tower: Any, heads: Any, pixels: Any, labels: dict[str, Any], feature: str) -> dict[str, float]:
    import torch

    out: dict[str, float] = {}
    with torch.no_grad():
        feats = torch.cat([features(tower, pixels[i:i + 256], feature) for i in range(0, len(pixels), 256)])
        for name, head in heads.items():
            pred = head(feats).argmax(-1)
            target = labels[name]
            out[name] = round(float((pred == target).float().mean()), 4)
            if name in ("color", "shape"):  # on object cells only: the informative part
                cells = target > 0
                out[f"{name}_on_objects"] = round(float((pred[cells] == target[cells]).float().mean()), 4)
            if name in ("word", "letter"):  # on text cells only
                cells = target > 0
                out[f"{name}_on_text"] = round(float((pred[cells] == target[cells]).float().mean()), 4)
    return out


def _feature_norm(tower: Any, pixels: Any, feature: str) -> float:
    import torch

    with torch.no_grad():
        return float(torch.cat([features(tower, pixels[i:i + 256], feature).norm(dim=-1).flatten()
                                for i in range(0, len(pixels), 256)]).mean())


def scale_residual(tower: Any, factor: float) -> None:
    """Scale a SigLIP tower's residual stream by ``factor`` in place: the patch and position
    embeddings and every layer's attention and MLP output projections. Each layer norm sees a
    scaled input and gives the same output, so every hidden state (the post-layernorm output
    aside) is ``factor`` times what it was."""
    import torch

    inner = getattr(tower, "vision_model", tower)  # transformers' SiglipVisionModel holds the layers itself
    parts = [inner.embeddings.patch_embedding, inner.embeddings.position_embedding]
    for layer in inner.encoder.layers:
        parts += [layer.self_attn.out_proj, layer.mlp.fc2]
    with torch.no_grad():
        for module in parts:
            for param in module.parameters():
                param.mul_(factor)


def pretrain_tower(out: str | Path, settings: TowerSettings | None = None, *, world_seed: int = 0,
                   world_size: str | int = "default", log_every: int = 250) -> Path:
    """Train the tower and write ``out/tower.safetensors`` and ``out/tower.json``; return ``out``.

    An ``out`` already holding a tower trained with the same settings is returned as it is.
    ``world_seed``/``world_size`` name the world the tower must stay out of (checked; the
    ``default`` size holds the ``demo`` and ``tiny`` worlds' scenes, as sizes only add indices).
    """
    import torch
    from safetensors.torch import save_file
    from transformers import SiglipVisionModel

    settings = settings or TowerSettings()
    out = Path(out)
    info_path = out / INFO
    if settings.image_size % settings.patch_size:
        raise ValueError(f"image_size {settings.image_size} is not a multiple of patch_size {settings.patch_size}")
    if settings.feature_norm is not None and settings.feature != "hidden":
        raise ValueError("feature_norm rescales the residual stream, which the post-layernorm output "
                         f"({settings.feature!r} features) does not see; use feature='hidden'")
    held_out = max(64, settings.images // 20)
    check_disjoint(settings.images + held_out, world_seed, world_size)
    if info_path.is_file() and json.loads(info_path.read_text()).get("settings") == asdict(settings):
        return out

    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    pixels, labels = _dataset(settings, 0, settings.images)
    val_pixels, val_labels = _dataset(settings, settings.images, held_out)
    render_seconds = time.perf_counter() - started

    side = settings.image_size // settings.patch_size
    tower = SiglipVisionModel(_vision_config(settings))
    heads = _heads(settings.vision_hidden_size, side, targets(settings))
    params = list(tower.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    warm = max(1, settings.steps // 20)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, settings.steps - warm)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    rng = random.Random(settings.seed)
    order: list[int] = []
    log: list[dict[str, float]] = []
    tower.train()
    for step in range(settings.steps):
        if len(order) < settings.batch_size:
            order = list(range(settings.images))
            rng.shuffle(order)
        batch, order = order[:settings.batch_size], order[settings.batch_size:]
        index = torch.tensor(batch)
        x = pixels[index]
        # flip image and labels: the shapes are mirror-symmetric; the reading targets are not
        # asked of a flipped image
        if rng.random() < 0.5:
            x = x.flip(-1)
            flip = True
        else:
            flip = False
        feats = features(tower, x, settings.feature)
        loss = torch.zeros(())
        for name, head in heads.items():
            target = labels[name][index].view(-1, side, side)
            if flip:
                if name in READING_TARGETS:
                    continue
                target = target.flip(-1)
                if name == "col":
                    target = side - 1 - target
            loss = loss + torch.nn.functional.cross_entropy(head(feats).flatten(0, 1), target.flatten())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        if (step + 1) % log_every == 0 or step + 1 == settings.steps:
            log.append({"step": step + 1, "loss": round(float(loss.detach()), 4),
                        "seconds": round(time.perf_counter() - started, 1)})
    tower.eval()
    accuracy = _accuracies(tower, heads, val_pixels, val_labels, settings.feature)
    norms = {"trained": _feature_norm(tower, val_pixels, settings.feature)}
    if settings.feature_norm is not None:
        scale_residual(tower, settings.feature_norm / norms["trained"])
        norms["shipped"] = _feature_norm(tower, val_pixels, settings.feature)

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in tower.state_dict().items()}
    save_file(state, str(out / WEIGHTS), metadata={"format": "pt", "sizes": json.dumps(settings.sizes())})
    info = {
        "settings": asdict(settings),
        "sizes": settings.sizes(),
        "split": {"world_seed": TOWER_WORLD_SEED, "name": TOWER_SPLIT, "train": [0, settings.images],
                  "held_out": [settings.images, settings.images + held_out],
                  "disjoint_from": {"world_seed": world_seed, "size": str(world_size)}},
        "targets": {k: v or side for k, v in targets(settings).items()},
        "held_out_accuracy": accuracy,
        "feature_norm": {k: round(v, 3) for k, v in norms.items()},
        "log": log,
        "seconds": {"render": round(render_seconds, 1), "total": round(time.perf_counter() - started, 1)},
    }
    tmp = out / (INFO + ".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(info_path)
    return out


def load_tower_weights(model: Any, tower_dir: str | Path) -> None:
    """Copy a pretrained tower into a loaded model's vision tower (strict): LLaVA's
    ``vision_tower`` (a ``SiglipVisionModel``) or Idefics3's ``vision_model`` (the same layers,
    without a pooling head)."""
    from safetensors.torch import load_file

    state = load_file(str(Path(tower_dir) / WEIGHTS))
    inner = model.model
    if hasattr(inner, "vision_tower"):
        inner.vision_tower.load_state_dict(state, strict=True)
    elif hasattr(inner, "vision_model"):
        prefix = "vision_model."
        mapped = {k.removeprefix(prefix): v for k, v in state.items()}
        mapped = {k: v for k, v in mapped.items() if not k.startswith("head.")}
        inner.vision_model.load_state_dict(mapped, strict=True)
    else:
        raise ValueError(f"{type(model).__name__}: no vision_tower or vision_model to load a tower into")


_PATCH_FACTOR = {"llava-tiny": 1, "idefics3-tiny": 2}


def build_with_tower(preset: str, out: str | Path, tower_dir: str | Path, *, texts: Any, seed: int = 0,
                     feature_layers: list[int] | None = None, **overrides: int) -> Path:
    """Build ``preset`` (``llava-tiny``, or ``idefics3-tiny`` for a tower trained with
    ``feature="normed"``) sized to fit the tower, with its weights; return ``out``.

    ``overrides`` change the language-model sizes; the vision sizes come from ``tower.json`` and
    may not be overridden. ``feature_layers`` (LLaVA only), e.g. ``[0, -1]``, sets the config's
    ``vision_feature_layer`` to a list: the projector takes those hidden states concatenated
    (layer 0 is the patch embedding: each cell's raw colour) and is initialised afresh. The folder
    is an ordinary Hugging Face model folder.
    """
    import torch

    from vila2.models.checkpoint import load, save
    from vila2.models.presets import build

    if preset not in _PATCH_FACTOR:
        raise ValueError(f"preset {preset!r} has no SigLIP tower; use one of {', '.join(_PATCH_FACTOR)}")
    sizes = json.loads((Path(tower_dir) / INFO).read_text())["sizes"]
    # the Idefics3 preset's patch_size counts pixels per token after its 2x2 pixel shuffle
    sizes = {**sizes, "patch_size": sizes["patch_size"] * _PATCH_FACTOR[preset]}
    clash = sorted(k for k in overrides if k in sizes and int(overrides[k]) != sizes[k])
    if clash:
        raise ValueError(f"overrides {clash} differ from the pretrained tower's sizes {sizes}")
    build(preset, out, texts=texts, seed=seed, **{**overrides, **sizes})
    model, processor = load(str(out), dtype=torch.float32)
    if feature_layers is not None:
        if preset != "llava-tiny":
            raise ValueError("feature_layers applies to llava-tiny only")
        from transformers import AutoModelForImageTextToText

        config = model.config
        config.vision_feature_layer = list(feature_layers)
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    load_tower_weights(model, tower_dir)
    return save(model, processor, out)


__all__ = [
    "LETTERS",
    "READING_TARGETS",
    "TARGETS",
    "TOWER_SPLIT",
    "TOWER_WORLD_SEED",
    "TowerSettings",
    "build_with_tower",
    "cell_labels",
    "check_disjoint",
    "check_scenes_disjoint",
    "features",
    "load_tower_weights",
    "pixel_tensor",
    "pretrain_tower",
    "targets",
    "tower_scene",
    "world_seeds",
]
