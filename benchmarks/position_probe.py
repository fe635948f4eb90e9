"""Where does a model lose the position of an object? (benchmarks/RESULTS.md, "Where places get lost")

    python benchmarks/position_probe.py MODEL [MODEL ...] [--images 600] [--world-seed 0]

For each model folder (a ``llava-tiny`` model on the world's tower: the shipped starting point,
a round's model, a specialist), the tower's features and the projected image tokens of
``--images`` world scenes of a split of their own are probed linearly, per cell, for the cell's
row and column (8 classes each, chance 12.5 %): trained on 80 % of the images, scored on the
rest, on the cells an object covers and on background cells apart. The tower is trained to
predict both on every cell; what the projector passes on to the decoder is what the decoder
can read places from.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

PROBE_SPLIT = "position-probe"  # scenes of their own: no training set or benchmark holds them


def _probe(features: Any, labels: Any, classes: int, cells: Any, *, steps: int = 300) -> dict[str, float]:
    """A linear probe trained on the first 80 % of the images; accuracy on the rest, on object
    cells (``cells`` true) and on background cells."""
    import torch

    images, per_image, width = features.shape
    x = features.reshape(-1, width)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    y, on_object = labels.reshape(-1), cells.reshape(-1)
    train = torch.arange(len(x)) < int(0.8 * images) * per_image
    torch.manual_seed(0)
    head = torch.nn.Linear(width, classes)
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(steps):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(head(x[train]), y[train]).backward()
        optimiser.step()
    with torch.no_grad():
        right = head(x).argmax(-1) == y
    return {"objects": float(right[~train & on_object].float().mean()),
            "background": float(right[~train & ~on_object].float().mean())}


def probe_model(model_dir: Path, images: int, world_seed: int) -> dict[str, Any]:
    """Per-cell row and column probes of the tower's features and the projected image tokens."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vila2.training.tower import cell_labels, features
    from vila2.world.render import render
    from vila2.world.scene import sample_scene, scene_seed

    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    config = model.config.vision_config
    side = config.image_size // config.patch_size
    scenes = [sample_scene(scene_seed(world_seed, PROBE_SPLIT, i)) for i in range(images)]
    pixels = processor.image_processor([render(s, config.image_size) for s in scenes],
                                       return_tensors="pt")["pixel_values"]
    labels = [cell_labels(s, config.image_size, config.patch_size) for s in scenes]
    on_object = torch.tensor([lab["color"] for lab in labels]) > 0
    cell = torch.arange(side * side)
    rows, cols = (cell // side).expand(images, -1), (cell % side).expand(images, -1)
    out: dict[str, Any] = {"model": str(model_dir), "images": images,
                           "object_cells": int(on_object.sum()), "cells": int(on_object.numel())}
    with torch.no_grad():
        tower = features(model.model.vision_tower, pixels, "hidden")
        projected = model.model.multi_modal_projector(tower)
    for name, feats in (("tower", tower), ("projected", projected)):
        out[name] = {"row": _probe(feats, rows, side, on_object), "col": _probe(feats, cols, side, on_object),
                     "norm": float(feats.norm(dim=-1).mean())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    results = [probe_model(m, args.images, args.world_seed) for m in args.models]
    print("| model | features | row, object cells | row, background | column, object cells | column, background |")
    print("|---|---|---:|---:|---:|---:|")
    for r in results:
        for name in ("tower", "projected"):
            row, col = r[name]["row"], r[name]["col"]
            print(f"| {r['model']} | {name} | {100 * row['objects']:.1f} | {100 * row['background']:.1f} "
                  f"| {100 * col['objects']:.1f} | {100 * col['background']:.1f} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
