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

Box = tuple[float, float, float, float]


def square(cx: float, cy: float, side: float) -> Box:
    """The square of ``side`` centred on ``(cx, cy)``."""
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


def rule_boxes(centre: tuple[float, float], cells: list[tuple[int, int]], side: float, unit: float) -> dict[str, Box | None]:
    """Each rule's box for one object: its centre (0–999 units), the (row, column) cells labelled
    with its colour and shape, its size class's mean side, and a cell's side in grid units."""
    boxes: dict[str, Box | None] = {"centre cell + size": square(
        (int(centre[0] / unit) + 0.5) * unit, (int(centre[1] / unit) + 0.5) * unit, side)}
    if not cells:  # covered by another object wherever it lies: no cell to read it from
        return {**boxes, "covered cells": None, "covered cells' middle + size": None}
    rows, cols = [r for r, _ in cells], [c for _, c in cells]
    extent = (min(cols) * unit, min(rows) * unit, (max(cols) + 1) * unit, (max(rows) + 1) * unit)
    middle = square((extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2, side)
    return {**boxes, "covered cells": extent, "covered cells' middle + size": middle}


def ceilings(images: int, world_seed: int, image_size: int = 64, patch_size: int = 8) -> dict[str, float]:
    """Share of objects (%) each rule boxes at IoU >= 0.5, and the number of objects."""
    # the grounding benchmark's own overlap measure (the vila2-grounding-specialist package)
    from vila2_grounding_specialist.boxes import iou

    from vila2.training.tower import cell_labels
    from vila2.world.scene import COLORS, SHAPES, SIDES, sample_scene, scene_seed

    side = image_size // patch_size
    unit = 1000 / side
    hits: dict[str, int] = {}
    objects = 0
    for index in range(images):
        scene = sample_scene(scene_seed(world_seed, "bench", index))
        labels = cell_labels(scene, image_size, patch_size)
        for obj in scene.objects:
            objects += 1
            colour, shape = COLORS.index(obj.color) + 1, SHAPES.index(obj.shape) + 1
            cells = [(j // side, j % side) for j in range(side * side)
                     if labels["color"][j] == colour and labels["shape"][j] == shape]
            mean_side = sum(SIDES[obj.size]) / 2
            for name, box in rule_boxes(obj.center, cells, mean_side, unit).items():
                hits[name] = hits.get(name, 0) + (box is not None and iou(box, obj.box) >= 0.5)
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
