"""How well could a model draw boxes from what its tower's cells hold? (benchmarks/RESULTS.md, "Boxes")

    python benchmarks/box_ceiling.py [--images 1000] [--world-seed 11]

The shipped tower is trained to label every 8-px cell (125 units of the 0–999 grid) with the
colour, shape and size class of the object covering it, and whether the cell holds an object's
centre (``vila2.training.tower.cell_labels``). A box at IoU >= 0.5 needs its corners within a
fraction of the object's side, finer than a cell. This script answers, for the objects of
``--images`` scenes of a world's benchmark split, what share of boxes each rule built on those
cell labels alone would place at IoU >= 0.5 — the ceiling of box accuracy for a decoder that
reads the cells perfectly:

* *centre cell + size*: a square of the size class's mean side on the middle of the centre cell;
* *covered cells*: the extent of the cells labelled with the object's colour and shape;
* *covered cells' middle + size*: a square of the size class's mean side on that extent's middle.

No model is run; the labels are read off the ground-truth scenes. Needs the grounding
specialist package (its ``iou``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

Box = tuple[float, float, float, float]


def square(cx: float, cy: float, side: float) -> Box:
    """The square of ``side`` centred on ``(cx, cy)``."""
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


def ceilings(images: int, world_seed: int, image_size: int = 64, patch_size: int = 8) -> dict[str, float]:
    """Share of objects (%) each rule boxes at IoU >= 0.5, and the number of objects."""
    # the grounding benchmark's own overlap measure (the vila2-grounding-specialist package)
    from vila2_grounding_specialist.boxes import iou

    from vila2.training.tower import cell_labels
    from vila2.world.scene import _SIDE, COLORS, SHAPES, sample_scene, scene_seed

    side = image_size // patch_size
    unit = 1000 / side
    rules: dict[str, Callable[..., Box | None]] = {
        "centre cell + size": lambda obj, cells, mean: square(
            (int(obj.center[0] / unit) + 0.5) * unit, (int(obj.center[1] / unit) + 0.5) * unit, mean),
        "covered cells": lambda obj, cells, mean: None if not cells else (
            min(c for _, c in cells) * unit, min(r for r, _ in cells) * unit,
            (max(c for _, c in cells) + 1) * unit, (max(r for r, _ in cells) + 1) * unit),
        "covered cells' middle + size": lambda obj, cells, mean: None if not cells else square(
            (min(c for _, c in cells) + max(c for _, c in cells) + 1) * unit / 2,
            (min(r for r, _ in cells) + max(r for r, _ in cells) + 1) * unit / 2, mean),
    }
    hits = dict.fromkeys(rules, 0)
    objects = 0
    for index in range(images):
        scene = sample_scene(scene_seed(world_seed, "bench", index))
        labels = cell_labels(scene, image_size, patch_size)
        for obj in scene.objects:
            objects += 1
            colour, shape = COLORS.index(obj.color) + 1, SHAPES.index(obj.shape) + 1
            cells = [(j // side, j % side) for j in range(side * side)
                     if labels["color"][j] == colour and labels["shape"][j] == shape]
            mean = sum(_SIDE[obj.size]) / 2
            for name, rule in rules.items():
                box = rule(obj, cells, mean)
                hits[name] += box is not None and iou(box, obj.box) >= 0.5
    return {**{name: 100 * n / objects for name, n in hits.items()}, "objects": objects}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--world-seed", type=int, default=11, help="a world no recipe or test runs on")
    args = parser.parse_args()
    result = ceilings(args.images, args.world_seed)
    print(f"{int(result.pop('objects'))} objects of {args.images} scenes of world {args.world_seed}:")
    for name, share in result.items():
        print(f"  {name:30s} {share:5.1f} % of boxes at IoU >= 0.5")


if __name__ == "__main__":
    main()
